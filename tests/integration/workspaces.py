"""Small offline workspaces for engine tests: a library, two images and a
compose file on the local base image, in a git repository of their own.
The compose rule is the monorepo's own (``rules/compose.py``, copied)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ..conftest import BASE_IMAGE, REPO

MBUILD = [sys.executable, "-m", "mbuild.cli"]


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          env=env).stdout


@dataclass
class Workspace:
    root: Path
    cache: Path
    names: dict[str, str]  # target -> image name

    def mbuild(self, *args: str, check: bool = True, env: dict | None = None,
               cwd: Path | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run([*MBUILD, "--cache-dir", str(self.cache), *args], cwd=cwd or self.root,
                              capture_output=True, text=True, timeout=600, env={**os.environ, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"mbuild {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-4000:]}")
        return proc

    def build_json(self, *args: str, **kw) -> dict[str, dict]:
        from .conftest import json_records

        return json_records(self.mbuild("build", "--json", "--progress", "plain", *args, **kw).stdout)


def write_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())


def make_workspace(root: Path, cache: Path, suffix: str) -> Workspace:
    names = {"app": f"mbuild-test-ws-app-{suffix}:latest", "tool": f"mbuild-test-ws-tool-{suffix}:latest"}
    write_tree(root, {
        "WORKSPACE.toml": f"""
            name = "testws"
            rules = ["rules/compose.py"]
            [images.base]
            ref = "{BASE_IMAGE}"
            """,
        "rules/compose.py": (REPO / "rules" / "compose.py").read_text(),
        ".dockerignore": ".env\n",
        ".env": "SECRET=1\n",
        "lib/BUILD": """
            filegroup(name = "lib", srcs = glob(["**/*.txt"]), visibility = ["//visibility:public"])
            """,
        "lib/greeting.txt": "hello\n",
        "app/BUILD": """
            filegroup(name = "srcs", srcs = ["main.sh"], visibility = ["//images:__pkg__"])
            """,
        "app/main.sh": "#!/bin/sh\ncat /w/lib/greeting.txt\n",
        "tool/BUILD": """
            filegroup(name = "srcs", srcs = ["tool.sh"], visibility = ["//images:__pkg__"])
            """,
        "tool/tool.sh": "#!/bin/sh\necho tool\n",
        "images/BUILD": f"""
            container_image(
                name = "app",
                base = "base",
                workdir = "/w",
                srcs = ["//app:srcs", "//lib"],
                commands = ["chmod +x app/main.sh", "sleep 2 && echo {suffix} > /w/build-id"],
                cmd = ["/w/app/main.sh"],
                image = "{names['app']}",
            )
            container_image(
                name = "tool",
                base = "base",
                workdir = "/w",
                srcs = ["//tool:srcs"],
                commands = ["chmod +x tool/tool.sh"],
                cmd = ["/w/tool/tool.sh"],
                image = "{names['tool']}",
            )
            compose(name = "compose", images = [":app", ":tool"])
            """,
    })
    git(root, "init", "-q")
    (root / ".gitignore").write_text(".env\nmbuild-out/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "first")
    return Workspace(root, cache, names)


def remove_workspace_images(docker_sdk, ws: Workspace) -> None:
    for name in ws.names.values():
        try:
            docker_sdk.images.remove(name, force=True)
        except Exception:  # noqa: BLE001 - never built, or already gone
            pass
