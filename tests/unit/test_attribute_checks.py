"""Attribute values mbuild accepted and should not have (issue 12, defect 7,
and ``ports`` from defect 6): ``publish = ["a:b"]`` went verbatim into the
compose file, ``srcs_owner = "nosuchuser"`` silently gave root ownership
(BuildKit takes a user name the image lacks as uid 0), ``ports = ["80000"]``
was an error naming no target or line. Each is now an error at the target's
BUILD line when the file loads, from the attribute's ``check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbuild.api import checks
from mbuild.errors import ConfigError
from mbuild.loading.graph import load_graph
from mbuild.workflow import load_rules
from mbuild.loading.workspace import load_workspace

from ..conftest import REPO


def load_error(root: Path, build: str) -> str:
    (root / "WORKSPACE.toml").write_text('name = "checks"\nrules = ["rules/compose.py"]\n'
                                         '[images.base]\nref = "mbuild-test/base:bookworm"\n')
    (root / "rules").mkdir()
    (root / "rules" / "compose.py").write_text((REPO / "rules" / "compose.py").read_text())
    (root / "pkg").mkdir()
    (root / "pkg" / "BUILD").write_text(build)
    rules = load_rules(load_workspace(root))
    with pytest.raises(ConfigError) as info:
        load_graph(root, rules.schemas)
    return str(info.value)


@pytest.mark.parametrize(("attr", "expected"), [
    ('publish = ["a:b"]', "attribute 'publish' of container_image: 'a:b' is not a port mapping"),
    ('publish = ["70000:80"]', "attribute 'publish' of container_image: '70000:80': ports are 1 to 65535"),
    ('ports = ["80000"]', "attribute 'ports' of container_image: '80000': ports are 1 to 65535"),
    ('srcs_owner = "nosuchuser"', "attribute 'srcs_owner' of container_image: 'nosuchuser' must be numbers"),
])
def test_container_image_values(tmp_path, attr, expected):
    message = load_error(tmp_path, f'# images\ncontainer_image(\n    name = "i",\n    base = "base",\n    {attr},\n)\n')
    assert message.startswith(f"pkg/BUILD:2: {expected}"), message


def test_compose_service_publish(tmp_path):
    message = load_error(tmp_path, 'compose_service(name = "db", image = "base", publish = ["5432:db"])\n')
    assert message.startswith("pkg/BUILD:1: attribute 'publish' of compose_service: '5432:db' is not a port "
                              "mapping"), message


@pytest.mark.parametrize("value", ["8000", "8080:80", "127.0.0.1:8080:80", "127.0.0.1::5432", "[::1]:80:80",
                                   "8000-8010:9000-9010/udp", "8000-8010:80", "53:53/udp"])
def test_port_mappings_compose_takes(value):
    assert checks.port_mappings([value]) is None


@pytest.mark.parametrize("value", ["a:b", ":80", "1:2:3", "0:80", "80:70000", "300.1.1.1:80:80", "8000-7000",
                                   "8000-8001:80-82", "80/icmp", "80:80:80"])
def test_port_mappings_compose_refuses(value):
    assert checks.port_mappings([value]) is not None


def test_exposed_ports_and_owners():
    assert checks.exposed_ports(["80", "80/udp", "8000-8010/tcp"]) is None
    assert all(checks.exposed_ports([v]) for v in ("x", "0", "65536", "80/icmp", "80:80"))
    assert checks.numeric_owner("") is None and checks.numeric_owner("1000") is None
    assert checks.numeric_owner("1000:1000") is None
    assert all(checks.numeric_owner(v) for v in ("nobody", "root", "1000:", ":1000", "app:app"))


def test_workspace_paths():
    for fine in ("", "apps/web", "a", "libs/py-core/src"):
        assert checks.workspace_path(fine) is None, fine
    for bad in ("/app", "../web", "apps/../web", "apps//web", "./apps", "apps/", "."):
        said = checks.workspace_path(bad)
        assert said == f"{bad!r} must be a workspace-relative path like apps/web (no leading /, no '.' or '..' parts)"
