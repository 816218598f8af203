"""BUILD evaluation is bounded in steps, memory, time and nesting (issue 12,
defect 5): each runaway is a one-line error at its file:line, exit 2, and
the process evaluating it (a worker with resource limits) never takes mbuild
or the machine down. Before: the loop ran for ever, memory grew to
gigabytes, a huge list ended in a Rust panic with a 140-line traceback and
5,000 nested brackets killed mbuild with SIGSEGV."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mbuild.errors import ConfigError
from mbuild.loading import sandbox
from mbuild.loading.build_files import BuildFileLoader, EvaluationLimits
from mbuild.loading.graph import load_graph
from mbuild.loading.schema import Attr, RuleSchema
from mbuild.loading.starlark_text import too_deep, top_level_statements

SCHEMAS = {"filegroup": RuleSchema("filegroup", "Files.", {"srcs": Attr("string_list", "Files.")})}
SMALL = EvaluationLimits(steps=2_000_000, memory=64 << 20, seconds=60, nesting=100)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in {"WORKSPACE.toml": "", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def error_of(root: Path, package: str = "pkg", limits: EvaluationLimits = SMALL) -> str:
    with BuildFileLoader(root, SCHEMAS, limits=limits) as loader, pytest.raises(ConfigError) as info:
        loader.load_package(package)
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message, message
    return message


def test_a_loop_that_runs_for_ever_stops_at_its_line(tmp_path):
    # The probe's reproduction, with the default limits.
    write(tmp_path, {"pkg/BUILD": "# a comment\nx = len([1 for i in range(100000) for j in range(100000) if False])\n"})
    message = error_of(tmp_path, limits=EvaluationLimits())
    assert message.startswith("pkg/BUILD:2: evaluation took more than 200,000,000 steps"), message


def test_steps_count_what_a_macro_does_at_the_macro_line(tmp_path):
    write(tmp_path, {
        "pkg/defs.bzl": "def spin():\n    n = 0\n    for i in range(100000000):\n        n = i\n    return n\n",
        "pkg/BUILD": 'load(":defs.bzl", "spin")\nx = spin()\n',
    })
    message = error_of(tmp_path)
    assert message.startswith("pkg/defs.bzl:3: evaluation took more than 2,000,000 steps"), message
    assert message.endswith("(called from pkg/BUILD:2)"), message


def test_a_growing_loop_in_a_bzl_file_stops_at_its_line(tmp_path):
    write(tmp_path, {
        "pkg/defs.bzl": "def grow():\n    x = []\n    for i in range(1000000000):\n        x.append(i)\n    return x\n",
        "pkg/BUILD": 'load(":defs.bzl", "grow")\nx = grow()\n',
    })
    limits = EvaluationLimits(memory=64 << 20)  # the default steps: memory runs out first
    message = error_of(tmp_path, limits=limits)
    assert message.startswith("pkg/defs.bzl:3: evaluation needs more than 64 MiB of memory"), message


def test_the_memory_limit_counts_what_the_evaluator_holds_not_its_parents_peak(tmp_path):
    """A forked evaluator inherits its parent's peak RSS (ru_maxrss): in a
    process that once held much more (a long test run, a warm server) a
    growing loop went unseen until the address-space cap struck, reported
    at the BUILD line instead of the .bzl line."""
    peak = bytearray(400 << 20)
    for i in range(0, len(peak), 4096):
        peak[i] = 1
    del peak
    test_a_growing_loop_in_a_bzl_file_stops_at_its_line(tmp_path)


@pytest.mark.parametrize("statement", [
    "x = list(range(1000000000))",  # a Rust panic before ("AlignedSize must not exceed u32::MAX")
    "x = [0] * 1000000000",  # one allocation of 8 GB
    "x = [[0] * 1000 for i in range(10000000)]",
])
def test_one_huge_value_is_an_error_at_its_statement(tmp_path, statement):
    write(tmp_path, {"pkg/BUILD": f'y = 1\n\n{statement}\nz = 2\n'})
    message = error_of(tmp_path)
    assert message.startswith("pkg/BUILD:3: evaluation needs more than 64 MiB of memory"), message


def test_brackets_nested_too_deep_are_refused_before_parsing(tmp_path):
    write(tmp_path, {"pkg/BUILD": "y = 1\nx = " + "[" * 5000 + "]" * 5000 + "\n"})
    message = error_of(tmp_path, limits=EvaluationLimits())
    assert message == ("pkg/BUILD:2: brackets nested more than 100 deep (column 105); flatten the expression "
                       "or build it in steps"), message


def test_a_crash_of_the_interpreter_is_an_error_at_its_statement(tmp_path, monkeypatch):
    # A long chain of unary minus recurses in the parser; with a small stack
    # it crashes the worker (SIGSEGV), and the statement is found again.
    monkeypatch.setattr(sandbox, "STACK_SIZE", 256 << 10)
    write(tmp_path, {
        "pkg/deep.bzl": "a = 1\nb = " + "-" * 50000 + "1\n",
        "pkg/BUILD": 'filegroup(name = "f", srcs = [])\nload(":deep.bzl", "b")\n',
    })
    message = error_of(tmp_path)
    assert message.startswith("pkg/deep.bzl:2: this statement crashed the Starlark interpreter (it ran out of "
                              "stack)"), message
    assert message.endswith("(loaded from pkg/BUILD:2)"), message


def test_after_a_crash_other_packages_still_load(tmp_path, monkeypatch):
    monkeypatch.setattr(sandbox, "STACK_SIZE", 256 << 10)
    write(tmp_path, {
        "bad/BUILD": "b = " + "-" * 50000 + "1\n",
        "good/BUILD": 'filegroup(name = "f", srcs = [])\n',
    })
    with BuildFileLoader(tmp_path, SCHEMAS, limits=SMALL) as loader:
        loader.prefetch(["bad", "good"])
        with pytest.raises(ConfigError, match=r"^bad/BUILD:1: this statement crashed"):
            loader.load_package("bad")
        assert list(loader.load_package("good").targets) == ["f"]


def test_ordinary_generated_code_fits_the_stack(tmp_path):
    # 5,000 terms crashed the parser on the process's own 8 MiB stack.
    write(tmp_path, {"pkg/BUILD": "x = " + " + ".join(["[1]"] * 5000) + '\nfilegroup(name = "f", srcs = [])\n'})
    with BuildFileLoader(tmp_path, SCHEMAS) as loader:
        assert list(loader.load_package("pkg").targets) == ["f"]


def test_load_graph_leaves_no_worker_behind(tmp_path):
    write(tmp_path, {"a/BUILD": 'filegroup(name = "f", srcs = [])\n', "b/BUILD": 'filegroup(name = "f", srcs = [])\n'})
    before = _children()
    graph = load_graph(tmp_path, SCHEMAS)
    assert sorted(map(str, graph.targets)) == ["//a:f", "//b:f"]
    assert _children() == before


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me and fields[0] != "Z":
                found.add(int(entry))
    return found


# ---------------------------------------------------------------------------
# the text checks


def test_too_deep_skips_strings_and_comments():
    assert too_deep('x = "' + "[" * 500 + '"  # ' + "(" * 500 + "\n", 100) is None
    assert too_deep("x = " + "(" * 101 + ")" * 101, 100) == (1, 105)
    assert too_deep("a = [\n" + "  {" * 3 + "}" * 3 + "]", 3) == (2, 9)
    assert too_deep("[" * 100, 100) is None


def test_top_level_statements():
    text = 'load(":x.bzl", "y")\n\n# c\nfilegroup(\n    name = "a",\n)\ndef f():\n    return 1\nz = [\n1]\n'
    assert top_level_statements(text) == [1, 4, 7, 9]
