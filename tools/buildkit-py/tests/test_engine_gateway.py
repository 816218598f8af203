"""Gateway builds against the engine: what a build function raises, a failed
sub-solve reported with its step, and images that cannot be resolved."""

from __future__ import annotations

import pytest

from buildkit import llb
from buildkit.client import SolveRequest
from buildkit.errors import SolveError
from buildkit.gateway import BuildResult

from bk_testenv import BASE_IMAGE

pytestmark = pytest.mark.engine


class Refused(Exception):
    pass


def test_an_exception_in_the_build_function_is_re_raised_as_is(buildkit):
    def build(gw):
        gw.resolve_image_config(BASE_IMAGE)
        raise Refused("the build function said no")

    with pytest.raises(Refused, match="the build function said no"):
        buildkit.build(build, SolveRequest())
    assert buildkit.resolve_image(BASE_IMAGE).digest.startswith("sha256:")  # the engine is fine


def test_a_failed_sub_solve_names_the_step_its_exit_code_and_log(buildkit, base_image_config):
    st = llb.image(BASE_IMAGE, config=base_image_config).run(
        "echo about to fail >&2; exit 4", name="a sub-solve that fails", ignore_cache=True).root()

    def build(gw):
        return BuildResult.single(gw.solve(st, evaluate=True).ref)

    with pytest.raises(SolveError) as info:
        buildkit.build(build, SolveRequest())
    err = info.value
    assert err.step == "a sub-solve that fails" and err.step_exit_code == 4
    assert "about to fail" in err.log_tail and "\n" not in str(err)


def test_an_image_nobody_has_is_a_lookup_error_naming_it(buildkit, run_id):
    missing = f"buildkit-test-missing-{run_id}:1"
    with pytest.raises(LookupError) as info:
        buildkit.resolve_image(missing)
    assert missing in str(info.value)
    found, gone = buildkit.resolve_images([(BASE_IMAGE, "linux/amd64"), (missing, None)])
    assert found.config["architecture"] == "amd64" and isinstance(gone, LookupError)
