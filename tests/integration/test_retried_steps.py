"""A step that retries, built on the engine: the failed attempt's stack trace
stays out of a successful build's output (one summary line instead) and is
in the build log the summary names; BuildKit's stdout and stderr streams
keep the attempt markers in place."""

from __future__ import annotations

import re

import pytest

from ..conftest import BASE_IMAGE
from .workspaces import Workspace, write_tree

pytestmark = pytest.mark.engine

# Fails with a Python traceback the first time, succeeds the second (a tmpfs
# remembers the first attempt within the step); the run id in the command
# keeps BuildKit from answering the step from its cache.
FLAKY = ('for i in 1 2 3; do echo "mbuild: attempt $i of 3"; '
         'if [ -e /flaky/{run}-tried ]; then echo fetched; exit 0; fi; touch /flaky/{run}-tried; '
         'python3 -c "raise ConnectionResetError(104, \'Connection reset by peer\')"; done >&2; exit 1')


def test_a_step_that_succeeds_on_retry_shows_a_summary_not_the_trace(tmp_path, run_id, docker_sdk):
    image = f"mbuild-test-retry-{run_id}:latest"
    rule = '''
        from mbuild.api import v1 as mb


        def _flaky(ctx):
            st = ctx.base("base").run(["/bin/sh", "-c", ctx.attr("command")],
                                      mounts=[mb.tmpfs("/flaky")], name=f"[{ctx.label}] flaky download")
            return mb.image_result(ctx, st.root())


        flaky_image = mb.rule(implementation=_flaky, doc="An image from a step that retries.", attrs={
            "base": mb.attr.base_image("Base image.", mandatory=True),
            "command": mb.attr.string("The retrying command.", mandatory=True),
            **mb.image_attrs(),
        })
        '''
    write_tree(tmp_path / "ws", {
        "WORKSPACE.toml": f'rules = ["rules/flaky.py"]\n[images.base]\nref = "{BASE_IMAGE}"\n',
        "rules/flaky.py": rule,
        "BUILD": f'flaky_image(name = "img", base = "base", command = {FLAKY.format(run=run_id)!r}, '
                 f'image = "{image}")\n',
    })
    ws = Workspace(tmp_path / "ws", tmp_path / "cache", {"img": image})
    try:
        result = ws.mbuild("build", "--progress", "plain", "//:img")
    finally:
        try:
            docker_sdk.images.remove(image, force=True)
        except Exception:  # noqa: BLE001 - not built
            pass
    out = result.stderr
    summary = re.search(r"attempt 1 of 3 failed \((.*)\), retrying; full log: (\S+)", out)
    assert summary, out
    assert summary[1] == "ConnectionResetError: [Errno 104] Connection reset by peer"
    assert "Traceback" not in out and "fetched" in out, out
    log = open(summary[2]).read()
    assert "Traceback (most recent call last):" in log and "mbuild: attempt 2 of 3" in log
