"""The bad-input corpus: every row of ``cases/*.toml`` is a change to the
base workspace (``base.toml``) and an mbuild command, run as a user runs it;
each must fail with its exit code and exactly one line on stderr,
``mbuild: error: ...``, with no traceback, naming its place (file:line, a
label or an address) and saying what to do. README.md says how to add a row.

Most rows need no engine (loading, analysis without base images, source
checks); a row with ``engine = true`` talks to it (it resolves base images, or
opens a solve's secrets) and is marked ``engine``; no row builds anything.
The rows run in parallel, in subprocesses, before their tests look at them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ..conftest import REPO

HERE = Path(__file__).resolve().parent
RULE_MODULES = ("rules/python.py", "rules/node.py", "rules/compose.py")
KEYS = {"id", "why", "files", "append", "remove", "symlinks", "command", "env", "exit", "place", "hint", "match",
        "engine", "git"}
PARALLEL = 4
TIMEOUT = 120


@dataclass(frozen=True)
class Case:
    id: str
    source: str  # cases/FILE.toml, for messages
    command: tuple[str, ...]
    place: str
    hint: str
    exit: int = 2
    files: dict = field(default_factory=dict)
    append: dict = field(default_factory=dict)
    remove: tuple[str, ...] = ()
    symlinks: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)
    match: str = ""
    engine: bool = False
    git: bool = False
    why: str = ""


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted((HERE / "cases").glob("*.toml")):
        rows = tomllib.loads(path.read_text(encoding="utf-8")).get("case", [])
        for row in rows:
            unknown = set(row) - KEYS
            assert not unknown, f"{path.name}: case {row.get('id')}: unknown keys {sorted(unknown)}"
            for key in ("id", "command", "place", "hint"):
                assert row.get(key), f"{path.name}: case {row.get('id')}: '{key}' is required"
            row = dict(row, command=tuple(row["command"]), remove=tuple(row.get("remove", ())))
            cases.append(Case(source=f"cases/{path.name}", **row))
    ids = [c.id for c in cases]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    assert not duplicates, f"case ids used twice: {duplicates}"
    return cases


CASES = load_cases()
BASE = tomllib.loads((HERE / "base.toml").read_text(encoding="utf-8"))["files"]


_REPEAT_RE = re.compile(r'\{(\d+) \* "([^"]*)"\}')


def _expand(text: str, root: Path, outside: Path) -> str:
    """``{root}`` and ``{outside}`` become those folders; ``{N * "text"}``
    becomes text N times (a 100,000-deep value without a 100 kB row)."""
    text = _REPEAT_RE.sub(lambda m: m.group(2) * int(m.group(1)), text)
    return text.replace("{outside}", str(outside)).replace("{root}", str(root))


def make_workspace(case: Case, top: Path) -> Path:
    """The base workspace with the case's changes, under ``top``."""
    root, outside = top / "ws", top / "outside"
    outside.mkdir(parents=True)
    (outside / "f").write_text("a file outside the workspace\n")
    for rel in RULE_MODULES:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    for rel, text in BASE.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, text in case.files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, dict):  # {bytes = "..."}: raw bytes, written as latin-1
            path.write_bytes(text["bytes"].encode("latin-1"))
        else:
            path.write_text(_expand(text, root, outside))
    for rel, text in case.append.items():
        with open(root / rel, "a") as f:
            f.write(_expand(text, root, outside))
    for rel in case.remove:
        path = root / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    for rel, target in case.symlinks.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_expand(target, root, outside), root / rel)
    if case.git:
        env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
            subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)
    return root


def run_case(case: Case) -> subprocess.CompletedProcess:
    """The case's command, run as the ``mbuild`` command runs (its entry
    point: the no-op fast path first), with no warm server and caches of
    its own."""
    top = Path(tempfile.mkdtemp(prefix="mbbad-"))
    try:
        root = make_workspace(case, top)
        env = {**os.environ, "MBUILD_SERVER": "0", "MBUILD_CACHE_DIR": str(top / "cache"),
               "XDG_CACHE_HOME": str(top / "xdg"),
               **{k: _expand(v, root, top / "outside") for k, v in case.env.items()}}
        for key, value in case.env.items():
            if value == "":
                env.pop(key, None)  # "" unsets a variable
        command = [_expand(arg, root, top / "outside") for arg in case.command]
        return subprocess.run([sys.executable, "-m", "mbuild", *command], cwd=root, env=env,
                              capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        shutil.rmtree(top, ignore_errors=True)


@pytest.fixture(scope="session")
def corpus_results(request):
    """Every selected case's run, started at once in a pool of PARALLEL."""
    wanted = {item.callspec.params["case"].id for item in request.session.items
              if getattr(item, "callspec", None) and isinstance(item.callspec.params.get("case"), Case)}
    pool = ThreadPoolExecutor(PARALLEL)
    futures: dict[str, Future] = {case.id: pool.submit(run_case, case) for case in CASES if case.id in wanted}
    yield futures
    pool.shutdown(cancel_futures=True)


def describe(case: Case, result: subprocess.CompletedProcess) -> str:
    return (f"{case.source}: {case.id}: mbuild {' '.join(case.command)} -> exit {result.returncode}\n"
            f"--- stderr\n{result.stderr[-3000:]}\n--- stdout\n{result.stdout[-1500:]}")


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.engine] if c.engine else [])
                                  for c in CASES])
def test_bad_input(case: Case, corpus_results):
    result = corpus_results[case.id].result()
    said = describe(case, result)
    assert "Traceback" not in result.stderr + result.stdout, said
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, said
    line = lines[0]
    assert line.startswith("mbuild: error: "), said
    assert result.returncode == case.exit, said
    assert case.place in line, f"the place {case.place!r} is not named\n{said}"
    assert case.hint in line, f"the hint {case.hint!r} is not given\n{said}"
    if case.match:
        assert re.search(case.match, line), f"{case.match!r} does not match\n{said}"


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 80, len(CASES)
