"""docs/rules.md's worked example holds: its rule module, its BUILD file and
its harness test, taken from the page itself, run without an engine."""

from __future__ import annotations

import re
import pytest

from mbuild.api import v1 as mb
from mbuild.api.testing import FakeBase, RuleHarness
from mbuild.errors import ConfigError

from ..conftest import REPO

GUIDE = REPO / "docs" / "rules.md"


def guide_block(path: str) -> str:
    """The ```python block of docs/rules.md whose first line is ``# <path>``."""
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", GUIDE.read_text(), re.S)
    found = [body for name, body in blocks if name == path]
    assert len(found) == 1, f"docs/rules.md has {len(found)} blocks for {path}"
    return found[0]


SITE_RULE = guide_block("rules/site.py")


def test_the_guides_harness_test_passes(tmp_path):
    namespace: dict = {"SITE_RULE": SITE_RULE}
    exec(compile(guide_block("tests/test_site.py"), "docs/rules.md", "exec"), namespace)
    namespace["test_static_site"](tmp_path)


def test_the_guides_build_file_analyses(tmp_path):
    harness = RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": 'rules = ["rules/site.py"]\n[images.debian]\nref = "debian:12"\n',
        "rules/site.py": SITE_RULE,
        "site/BUILD": guide_block("site/BUILD"),
        "site/public/index.html": "<h1>hello</h1>\n",
        "site/public/css/site.css": "h1 { color: teal }\n",
    }, bases={"debian": FakeBase(config={"User": "root"})})
    site = harness.analyze("//site:image")["//site:image"]
    assert site[mb.Service] == mb.Service("image", "", ("8080:8080",))
    assert site.image_config["ExposedPorts"] == {"8080/tcp": {}}
    assert site.image_config["WorkingDir"] == "/srv/site"
    local = next(s for s in site.steps if s.get("source") == "local://workspace")
    assert local["attrs"]["local.includepattern"] == '["site/public/css/site.css","site/public/index.html"]'
    assert site.info.image.base == "debian"


def test_files_outside_strip_prefix_are_an_error_at_the_build_line(tmp_path):
    harness = RuleHarness.write(tmp_path, {
        "WORKSPACE.toml": 'rules = ["rules/site.py"]\n[images.debian]\nref = "debian:12"\n',
        "rules/site.py": SITE_RULE,
        "site/BUILD": 'filegroup(name = "files", srcs = ["index.html"])\n'
                      'static_site(name = "image", base = "debian", srcs = [":files"], strip_prefix = "site/public")\n',
        "site/index.html": "<h1>hello</h1>\n",
    })
    with pytest.raises(ConfigError) as err:
        harness.analyze("//site:image")
    assert str(err.value) == "site/BUILD:2: //site:image: site/index.html is not under site/public/; " \
                             "fix srcs or strip_prefix"


def test_the_guide_names_files_that_exist():
    for path in re.findall(r"`((?:tools|tests|rules|docs)/[\w/.-]+\.(?:py|md))`", GUIDE.read_text()):
        assert (REPO / path).is_file() or path.startswith(("rules/site.py", "tests/test_site.py")), path
