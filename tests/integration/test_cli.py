"""The ``mbuild`` command line, run as a user runs it (a subprocess).

Errors: exit code 2 and one line on stderr naming the place (file:line or a
label), never a traceback unless ``--debug``. Queries, graphs and help on the
real repository. Only the tests that build are marked ``engine``.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from ..conftest import REPO
from .conftest import PYTHON_RUNTIME, describe, json_records, mbuild

WORKSPACE = 'name = "clitest"\n'
FILES_BUILD = 'filegroup(name = "files", srcs = ["x.txt"])\n'


def make_workspace(root: Path, files: dict[str, str]) -> Path:
    """Write a small workspace: WORKSPACE.toml, pkg/x.txt and ``files``."""
    for rel, text in {"WORKSPACE.toml": WORKSPACE, "pkg/x.txt": "x\n", **files}.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def one_line_error(result) -> str:
    """Assert exit code 2 and exactly one ``mbuild: error:`` line; return it."""
    assert result.returncode == 2, describe(result)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, describe(result)
    assert lines[0].startswith("mbuild: error: "), describe(result)
    assert "Traceback" not in result.stderr + result.stdout
    return lines[0]


# ---------------------------------------------------------------------------
# errors: (id, files, arguments, the message expected, as a regex)

ERROR_CASES = [
    (
        "build-syntax-error",
        {"pkg/BUILD": """\
            # a comment

            filegroup(name = "a", srcs = ["x.txt"])
            filegroup(name = "b" srcs = ["x.txt"])
            """},
        ["query", "//pkg:a"],
        r"pkg/BUILD:4: syntax error",
    ),
    (
        # Editors end files with a newline: the parser's end-of-file error
        # must still point at the unclosed bracket's line, not line 1.
        "build-unclosed-bracket-at-end",
        {"pkg/BUILD": """\
            filegroup(
                name = "files",
                srcs = ["x.txt"
            """},
        ["query", "//pkg:files"],
        r"pkg/BUILD:3: syntax error",
    ),
    (
        "unknown-attribute",
        {"pkg/BUILD": """\
            filegroup(
                name = "files",
                srcz = ["x.txt"],
            )
            """},
        ["build", "//pkg:files"],
        r"pkg/BUILD:[1-3]: unknown attribute 'srcz' of filegroup; did you mean 'srcs'\?",
    ),
    (
        "dependency-cycle",
        {"pkg/BUILD": """\
            group(name = "a", deps = [":b"])
            group(name = "b", deps = [":c"])
            group(name = "c", deps = [":a"])
            """},
        ["build", "//pkg:a"],
        r"pkg/BUILD:\d+: dependency cycle: //pkg:a -> //pkg:b -> //pkg:c -> //pkg:a",
    ),
    (
        "unknown-label",
        {"pkg/BUILD": FILES_BUILD},
        ["build", "//pkg:filez"],
        r"unknown target //pkg:filez; did you mean //pkg:files\?",
    ),
    (
        "unknown-label-in-query",
        {"pkg/BUILD": FILES_BUILD},
        ["query", "deps(//pkg:filez)"],
        r"unknown target //pkg:filez; did you mean //pkg:files\?",
    ),
    (
        "unknown-dependency",
        {"pkg/BUILD": FILES_BUILD + 'group(name = "g", deps = [":filez"])\n'},
        ["build", "//pkg:g"],
        r"//pkg:filez.*pkg/BUILD:2.*did you mean //pkg:files\?",
    ),
    (
        "missing-source-file",
        {"pkg/BUILD": 'filegroup(name = "files", srcs = ["x.txt", "missing.txt"])\n'},
        ["build", "//pkg:files"],
        r"pkg/BUILD:1: //pkg:files: source file pkg/missing.txt does not exist",
    ),
    (
        "malformed-workspace-toml",
        {"WORKSPACE.toml": 'name = "clitest"\n\n[images.python]\nref = "python:3.11"\nref2 = \n',
         "pkg/BUILD": FILES_BUILD},
        ["build", "//pkg:files"],
        r"WORKSPACE\.toml:5: invalid TOML",
    ),
    (
        "unknown-workspace-key",
        {"WORKSPACE.toml": 'name = "clitest"\nbuildkitt = "docker://"\n', "pkg/BUILD": FILES_BUILD},
        ["query", "//pkg:files"],
        r"WORKSPACE\.toml:2: unknown key 'buildkitt'; did you mean 'buildkit'\?",
    ),
    (
        "rule-module-missing",
        {"WORKSPACE.toml": 'name = "clitest"\nrules = ["rules/nope.py"]\n', "pkg/BUILD": FILES_BUILD},
        ["query", "//pkg:files"],
        r"WORKSPACE\.toml:2: rules: rules/nope\.py does not exist in the workspace; fix the path",
    ),
    (
        "rule-module-forbidden-import",
        {"WORKSPACE.toml": 'name = "clitest"\nrules = ["rules/r.py"]\n', "pkg/BUILD": FILES_BUILD,
         "rules/r.py": "from mbuild.api import v1 as mb\nimport os\n"},
        ["help"],
        r"rules/r\.py:2: import of 'os' is not allowed in rule code",
    ),
    (
        "rule-code-exception",
        {"WORKSPACE.toml": 'name = "clitest"\nrules = ["rules/r.py"]\n', "pkg/BUILD": 'broken(name = "b")\n',
         "rules/r.py": "from mbuild.api import v1 as mb\n\ndef _impl(ctx):\n    return {}['x']\n\n"
                       "broken = mb.rule(implementation=_impl, doc='Fails when analysed.', attrs={})\n"},
        ["build", "//pkg:b"],
        r"rules/r\.py:4: KeyError while analysing //pkg:b: 'x'; fix the rule code",
    ),
]


@pytest.mark.parametrize(("files", "args", "expected"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_error_is_one_line_with_its_place(tmp_path, files, args, expected):
    ws = make_workspace(tmp_path / "ws", files)
    line = one_line_error(mbuild(*args, cwd=ws))
    assert re.search(expected, line), line


def test_debug_shows_the_traceback(tmp_path):
    ws = make_workspace(tmp_path / "ws", {"pkg/BUILD": 'filegroup(name = "a" srcs = [])\n'})
    result = mbuild("--debug", "query", "//pkg:a", cwd=ws)
    assert result.returncode == 2, describe(result)
    assert "Traceback (most recent call last)" in result.stderr
    assert re.search(r"^mbuild: error: pkg/BUILD:1: syntax error", result.stderr.splitlines()[-1])


def test_no_workspace(tmp_path):
    line = one_line_error(mbuild("query", "//...", cwd=tmp_path))
    assert "WORKSPACE.toml" in line


@pytest.mark.parametrize("args", [["frobnicate"], ["build", "--frobnicate", "//pkg:files"], ["--frobnicate"],
                                  ["query"], ["graph", "--format", "svg", "//pkg:files"]],
                         ids=["unknown-command", "unknown-build-option", "unknown-global-option",
                              "missing-argument", "bad-choice"])
def test_usage_errors_exit_2(tmp_path, args):
    ws = make_workspace(tmp_path / "ws", {"pkg/BUILD": FILES_BUILD})
    one_line_error(mbuild(*args, cwd=ws))


def test_help_for_unknown_rule(tmp_path):
    # In the monorepo, its own rules are known: the closest one is suggested.
    line = one_line_error(mbuild("help", "python_imag"))
    assert "did you mean python_image?" in line, line
    # Outside any workspace only mbuild's built-ins are.
    line = one_line_error(mbuild("help", "python_image", cwd=tmp_path))
    assert "known rules: container_image, dockerfile, filegroup, group" in line, line


# ---------------------------------------------------------------------------
# -C / --directory, with the label shorthand (`mbuild //x:y` = `mbuild build //x:y`)


@pytest.mark.parametrize("args", [
    ["-C", "{abs}", "query", "deps(//pkg:filez)"],
    ["-C", "{abs}", "build", "//pkg:filez"],
    ["-C", "{abs}", "//pkg:filez"],
    ["--directory", "{abs}", "//pkg:filez"],
    ["--directory={abs}", "//pkg:filez"],
    ["-C", "ws", "//pkg:filez"],
    ["-C", "ws", "build", "//pkg:filez"],
], ids=["abs-query", "abs-build", "abs-shorthand", "long-shorthand", "long-equals-shorthand",
        "relative-shorthand", "relative-build"])
def test_directory_option_reaches_the_workspace(tmp_path, args):
    ws = make_workspace(tmp_path / "ws", {"pkg/BUILD": FILES_BUILD})
    args = [a.replace("{abs}", str(ws)) for a in args]
    # Run from the workspace's parent: only -C points mbuild at it.
    line = one_line_error(mbuild(*args, cwd=tmp_path))
    assert "unknown target //pkg:filez; did you mean //pkg:files?" in line, line


# ---------------------------------------------------------------------------
# query, graph and help on the real repository


@pytest.mark.parametrize(("expression", "expected"), [
    ("deps(//infra:python_runtime)",
     ["//:python_lock", "//apps/api:srcs", "//infra:python_deps", "//infra:python_runtime", "//libs/py-core:py-core"]),
    ("rdeps(//..., //libs/py-core:py-core)",
     ["//infra:all", "//infra:compose", "//infra:python_deps", "//infra:python_runtime", "//libs/py-core:py-core"]),
    ("kind(python_image, //...)", ["//infra:python_runtime"]),
    ("kind('node_.*', //...)", ["//infra:node_builder", "//infra:node_runtime"]),
], ids=["deps", "rdeps", "kind", "kind-regex"])
def test_query_prints_labels_one_per_line(expression, expected):
    result = mbuild("query", expression)
    assert result.returncode == 0, describe(result)
    assert sorted(result.stdout.splitlines()) == sorted(expected)


# The edges of //infra:all, as the BUILD files declare them.
INFRA_EDGES = {
    ("//infra:all", "//infra:python_runtime"), ("//infra:all", "//infra:node_runtime"),
    ("//infra:all", "//infra:compose"),
    ("//infra:compose", "//infra:python_runtime"), ("//infra:compose", "//infra:node_runtime"),
    ("//infra:python_runtime", "//infra:python_deps"), ("//infra:python_runtime", "//apps/api:srcs"),
    ("//infra:python_deps", "//:python_lock"), ("//infra:python_deps", "//libs/py-core:py-core"),
    ("//infra:node_runtime", "//infra:node_builder"),
    ("//infra:node_builder", "//infra:node_deps"), ("//infra:node_builder", "//:node_config"),
    ("//infra:node_builder", "//apps/web:srcs"),
    ("//infra:node_deps", "//:node_manifests"), ("//:node_manifests", "//apps/web:manifest"),
}


def graph_edges(text: str, node_re: str, edge_re: str) -> set[tuple[str, str]]:
    names = dict(re.findall(node_re, text))
    return {(names[a], names[b]) for a, b in re.findall(edge_re, text)}


def test_graph_dot():
    result = mbuild("graph", "--format", "dot", "//infra:all")
    assert result.returncode == 0, describe(result)
    text = result.stdout
    assert re.match(r"\s*digraph\s+\S*\s*\{", text) and text.rstrip().endswith("}")
    assert text.count("{") == text.count("}")
    edges = graph_edges(text, r'(\w+) \[label="(//[^"\\]*)', r"(\w+) -> (\w+);")
    assert edges == INFRA_EDGES


def test_graph_mermaid():
    result = mbuild("graph", "--format", "mermaid", "//infra:all")
    assert result.returncode == 0, describe(result)
    text = result.stdout
    assert re.match(r"(graph|flowchart) (LR|TD|TB|RL|BT)\n", text)
    edges = graph_edges(text, r'(\w+)\["(//[^"<]*)', r"(\w+) --> (\w+)")
    assert edges == INFRA_EDGES


# The rules the monorepo's BUILD files use: the workspace's own (rules/*.py)
# and mbuild's built-ins.
MONOREPO_RULES = {"compose": "rules/compose.py", "compose_service": "rules/compose.py", "node_build": "rules/node.py", "node_image": "rules/node.py",
                  "pnpm_install": "rules/node.py", "poetry_install": "rules/python.py",
                  "python_image": "rules/python.py", "filegroup": "mbuild/rules/files.py",
                  "group": "mbuild/rules/files.py", "container_image": "mbuild/rules/container.py",
                  "dockerfile": "mbuild/rules/dockerfile.py"}


def test_help_lists_the_rules_and_where_each_is_defined():
    result = mbuild("help")
    assert result.returncode == 0, describe(result)
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    listed = {line.split(":", 1)[0]: line for line in lines}
    assert list(listed) == sorted(MONOREPO_RULES)
    for name, module in MONOREPO_RULES.items():
        assert listed[name].endswith(f"({module})"), listed[name]
        assert len(listed[name].split(":", 1)[1]) > 20, listed[name]


def test_help_documents_every_attribute_of_every_rule():
    from mbuild.workflow import rules_here

    rules = rules_here(REPO)
    assert set(rules) == set(MONOREPO_RULES)
    for name, rule in rules.items():
        text = mbuild("help", name).stdout
        assert f"Defined in {rule.location}." in text, text
        for attr, decl in rule.schema.all_attrs.items():
            row = next((line for line in text.splitlines() if line.startswith(f"| `{attr}` |")), None)
            assert row is not None and decl.doc.split()[0] in row, (name, attr, text)


def test_help_for_a_rule_documents_its_attributes():
    result = mbuild("help", "python_image")
    assert result.returncode == 0, describe(result)
    text = result.stdout
    assert "python_image" in text.splitlines()[0]
    for attr, doc in [("venv", "poetry_install"), ("srcs", "Filegroups"), ("uid", "uid and gid"),
                      ("image", "loaded into the engine"), ("container_name", "container_name"), ("base", "slim")]:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{attr}` |")), None)
        assert row is not None, f"no row for {attr}:\n{text}"
        assert doc in row, row
    assert "mandatory" in next(line for line in text.splitlines() if line.startswith("| `venv` |"))


# ---------------------------------------------------------------------------
# building (needs the engine)

JSON_FIELDS = {"label": str, "kind": str, "image": str, "manifest_digest": str, "cached": bool, "files": list}


@pytest.mark.engine
def test_build_json_fields_and_shorthand():
    long_form = mbuild("build", PYTHON_RUNTIME, "--json", "--progress", "plain")
    assert long_form.returncode == 0, describe(long_form)
    shorthand = mbuild(PYTHON_RUNTIME, "--json", "--progress", "plain")
    assert shorthand.returncode == 0, describe(shorthand)
    for result in (long_form, shorthand):
        # stdout holds only the records; progress goes to stderr
        records = json_records(result.stdout)
        assert list(records) == [PYTHON_RUNTIME]
        record = records[PYTHON_RUNTIME]
        for key, kind in JSON_FIELDS.items():
            assert isinstance(record[key], kind), (key, record)
        assert record["kind"] == "python_image" and record["files"] == []
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", record["manifest_digest"])
    strip = lambda r: {k: v for k, v in json.loads(r.stdout).items() if k not in ("seconds", "cached", "source")}  # noqa: E731
    assert strip(long_form) == strip(shorthand)
    assert json.loads(shorthand.stdout)["cached"] is True, "an unchanged rebuild was not cached"
