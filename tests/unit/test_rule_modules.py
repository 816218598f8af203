"""Workspace rule modules: named in WORKSPACE.toml, loaded as workspace code
with their guards (import allow-list, built-ins, private names), every
mistake one line at its file:line with exit code 2."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from mbuild.api.testing import RuleHarness
from mbuild.errors import ConfigError
from mbuild.loading.workspace import load_workspace, parse_workspace
from mbuild.workflow import load_rules

HEAD = "from mbuild.api import v1 as mb\n"
RULE = """
def _impl(ctx):
    return [mb.Files(("pkg/x.txt",))]

thing = mb.rule(implementation=_impl, doc="A thing made of one file.", attrs={})
"""
BUILD = 'thing(name = "t")\n'


def write(root: Path, files: dict[str, str]) -> Path:
    files = {"WORKSPACE.toml": 'name = "rm"\nrules = ["rules/r.py"]\n', "pkg/x.txt": "x\n", **files}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def rules_of(root: Path):
    return load_rules(load_workspace(root))


def load_error(root: Path) -> str:
    with pytest.raises(ConfigError) as err:
        rules_of(root)
    assert err.value.exit_code == 2
    message = str(err.value)
    assert "\n" not in message, message
    return message


def analysis_error(root: Path, label: str = "//pkg:t") -> str:
    with pytest.raises(ConfigError) as err:
        RuleHarness(root).analyze(label)
    message = str(err.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------
# naming the modules


def test_a_listed_module_exports_its_public_rules_with_their_code(tmp_path):
    write(tmp_path, {
        "rules/r.py": HEAD + "from .shared import DOC\nfrom rules.deeper.util import files\n" + RULE.replace(
            '"A thing made of one file."', "DOC").replace('("pkg/x.txt",)', "files()") +
        "_hidden = mb.rule(implementation=_impl, doc='Not exported.', attrs={})\n",
        "rules/shared.py": 'DOC = "A thing made of one file."\n',
        "rules/deeper/util.py": 'def files():\n    return ("pkg/x.txt",)\n',
        "pkg/BUILD": BUILD,
    })
    rules = rules_of(tmp_path)
    thing = rules["thing"]
    assert "_hidden" not in rules and {"filegroup", "group", "container_image"} <= set(rules)
    assert thing.module == "rules/r.py" and str(thing.location) == "rules/r.py:8"
    assert list(thing.files) == ["rules/deeper/util.py", "rules/r.py", "rules/shared.py"]
    assert all(sha.startswith("sha256:") for sha in thing.files.values())
    assert thing.api == ("v1",)
    assert set(rules.code_files) == set(thing.files)
    assert RuleHarness(tmp_path).analyze("//pkg:t")["//pkg:t"].info.files == ("pkg/x.txt",)


def test_modules_run_outside_pythons_module_cache(tmp_path):
    for name, doc in (("one", "The first thing."), ("two", "The second thing.")):
        write(tmp_path / name, {"rules/r.py": HEAD + RULE.replace("A thing made of one file.", doc)})
    one, two = rules_of(tmp_path / "one"), rules_of(tmp_path / "two")
    assert (one["thing"].schema.doc, two["thing"].schema.doc) == ("The first thing.", "The second thing.")
    assert "rules" not in sys.modules and "rules.r" not in sys.modules


@pytest.mark.parametrize(("workspace_toml", "files", "expected"), [
    ('rules = ["rules/nope.py"]\n', {}, "WORKSPACE.toml:1: rules: rules/nope.py does not exist in the workspace; "
                                       "fix the path"),
    ('name = "x"\nrules = [\n  "rules/r.py",\n  "rules/helpers.py",\n]\n',
     {"rules/helpers.py": "X = 1\n"}, "WORKSPACE.toml:4: rules: rules/helpers.py defines no rules (a public name "
                                      "bound to mbuild.api.v1.rule(...)); list only modules that do"),
    ('rules = ["rules/r.txt"]\n', {}, 'WORKSPACE.toml:1: rules: \'rules/r.txt\' must be a workspace-relative path '
                                     'to a .py file, like "rules/python.py"'),
    ('rules = ["../outside.py"]\n', {}, "WORKSPACE.toml:1: rules: '../outside.py' must be a workspace-relative path"),
], ids=["missing", "no-rules", "not-python", "outside"])
def test_bad_module_lists_name_the_workspace_line(tmp_path, workspace_toml, files, expected):
    write(tmp_path, {"WORKSPACE.toml": workspace_toml, "rules/r.py": HEAD + RULE, **files})
    assert load_error(tmp_path).startswith(expected)


def test_rule_names_are_unique_and_callable_from_build_files(tmp_path):
    write(tmp_path, {"WORKSPACE.toml": 'rules = ["rules/r.py", "rules/s.py"]\n', "rules/r.py": HEAD + RULE,
                     "rules/s.py": HEAD + RULE})
    assert load_error(tmp_path) == "rules/s.py:6: rule 'thing' is already defined at rules/r.py:6; rename one of them"
    write(tmp_path, {"WORKSPACE.toml": 'rules = ["rules/r.py"]\n', "rules/r.py": HEAD + RULE.replace("thing =", "glob =")})
    assert load_error(tmp_path).startswith("rules/r.py:6: rule name 'glob' cannot be called from BUILD files")
    write(tmp_path, {"rules/r.py": HEAD + RULE.replace("thing =", "filegroup =")})
    assert load_error(tmp_path).startswith("rules/r.py:6: rule 'filegroup' is already defined at "
                                           "mbuild/rules/files.py:")


def test_a_module_listed_and_imported_is_one_module(tmp_path):
    write(tmp_path, {"WORKSPACE.toml": 'rules = ["rules/r.py", "rules/s.py"]\n', "rules/r.py": HEAD + RULE,
                     "rules/s.py": HEAD + "from rules.r import thing\n" + RULE.replace("thing =", "other =")})
    rules = rules_of(tmp_path)
    assert rules["thing"].module == "rules/r.py" and rules["other"].module == "rules/s.py"
    assert list(rules["other"].files) == ["rules/r.py", "rules/s.py"]


# ---------------------------------------------------------------------------
# the guards, when a module loads


@pytest.mark.parametrize(("source", "expected"), [
    ("import os\n", "rules/r.py:2: import of 'os' is not allowed in rule code: a rule reads files, the network, "
                    "the clock and the environment only through its context (allowed: mbuild.api.v1, workspace "
                    "modules, __future__, base64"),
    ("from time import time\n", "rules/r.py:2: import of 'time' is not allowed in rule code"),
    ("import subprocess as sp\n", "rules/r.py:2: import of 'subprocess' is not allowed in rule code"),
    ("from mbuild.analysis import context\n", "rules/r.py:2: import of 'mbuild.analysis' is not allowed"),
    ("from rules import nothing_here\n", "rules/r.py:2: ImportError while loading rules/r.py: cannot import name"),
    ("def f():\n    import json\n", "rules/r.py:3: imports go at the top level of a rule module"),
    ("X = mb.attr._private\n", "rules/r.py:2: '._private': names starting with '_' are not reachable from rule "
                               "code; use the public API"),
    ("X = ().__class__\n", "rules/r.py:2: '.__class__': names starting with '_' are not reachable"),
    ("g = (i for i in [])\nF = g.gi_frame\n", "rules/r.py:3: '.gi_frame': frame and code objects are not reachable"),
    ("os = __import__('os')\n", "rules/r.py:2: __import__ is not reachable from rule code"),
    ("def f(:\n", "rules/r.py:2: syntax error: "),
    ("DATA = open('/etc/passwd').read()\n",
     "rules/r.py:2: PermissionError while loading rules/r.py: open() is not available in rule code: read workspace "
     "files through ctx.source() and ctx.files(); fix the rule code"),
    ("K = hash('x')\n", "rules/r.py:2: PermissionError while loading rules/r.py: hash() is not available in rule "
                        "code: it differs from run to run, and so would keys"),
    ("E = eval('1')\n", "rules/r.py:2: PermissionError while loading rules/r.py: eval() is not available"),
    ("import typing\nS = typing.sys\n", "rules/r.py:3: AttributeError while loading rules/r.py: module 'typing' "
                                        "has no attribute 'sys'"),
    ("from typing import get_type_hints\n", "rules/r.py:2: ImportError while loading rules/r.py"),
    ("import json\nL = json.load\n", "rules/r.py:3: AttributeError while loading rules/r.py: module 'json' has no "
                                     "attribute 'load'"),
    ("G = getattr(mb, '_x')\n", "rules/r.py:2: AttributeError while loading rules/r.py: getattr(..., '_x'): names "
                                "starting with '_', and frames, are not reachable from rule code"),
    ("g = (i for i in [])\nF = getattr(g, 'gi_frame')\n",
     "rules/r.py:3: AttributeError while loading rules/r.py: getattr(..., 'gi_frame'): names starting with '_', and "
     "frames, are not reachable"),
    ("class P:\n    f_value = 1\n    co_owner = 2\nV = P.f_value + P.co_owner\n", None),
    ("X = 1 / 0\n", "rules/r.py:2: ZeroDivisionError while loading rules/r.py: division by zero; fix the rule code"),
], ids=["os", "time", "subprocess", "mbuild-internals", "missing-workspace-name", "nested-import", "private",
        "dunder", "frame", "dunder-import", "syntax", "open", "hash", "eval", "typing-sys", "get-type-hints",
        "json-load", "getattr-private", "getattr-frame", "plain-names-like-frames", "exception"])
def test_guards_refuse_at_the_line_and_allow_look_alikes(tmp_path, source, expected):
    write(tmp_path, {"rules/r.py": HEAD + source + RULE})
    if expected is None:  # allowed
        assert "thing" in rules_of(tmp_path)
    else:
        assert load_error(tmp_path).startswith(expected)


def test_allowed_imports_work_and_print_goes_to_stderr(tmp_path, capsys):
    write(tmp_path, {"rules/r.py": "from __future__ import annotations\n" + HEAD + textwrap.dedent("""\
        import collections.abc
        import json, re, dataclasses, functools, hashlib, itertools, textwrap
        from typing import Mapping
        import mbuild.api.v1 as again
        from mbuild.api import v1
        ENCODED = json.dumps({"a": [1, 2]}, sort_keys=True)
        assert re.fullmatch(r"\\d+", "12") and again is mb and v1 is mb
        assert issubclass(dict, collections.abc.Mapping) and Mapping
        print("loading rules/r.py")
        """) + RULE})
    assert "thing" in rules_of(tmp_path)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "loading rules/r.py\n"


def test_rule_attributes_are_checked_where_they_are_declared(tmp_path):
    write(tmp_path, {"rules/r.py": HEAD + RULE.replace("attrs={}", 'attrs={"name": mb.attr.string("The name.")}')})
    assert load_error(tmp_path) == ("rules/r.py:6: ValueError while loading rules/r.py: rule(): attribute 'name' "
                                    "is implicit (every rule has name, visibility, tags); fix the rule code")
    write(tmp_path, {"rules/r.py": HEAD + RULE.replace("attrs={}", 'attrs={"n": "a string"}')})
    assert load_error(tmp_path).startswith("rules/r.py:6: TypeError while loading rules/r.py: rule(): attribute 'n' "
                                           "must be made with mb.attr.<type>(...), got str")


# ---------------------------------------------------------------------------
# the guards, when a rule runs


@pytest.mark.parametrize(("body", "expected"), [
    ("    return 1 / 0\n", "rules/r.py:6: ZeroDivisionError while analysing //pkg:t: division by zero; fix the rule "
                          "code"),
    ("    return getattr(ctx, '_workspace')\n",
     "rules/r.py:6: AttributeError while analysing //pkg:t: getattr(..., '_workspace'): names starting with '_', and "
     "frames, are not reachable from rule code"),
    ("    return open('pkg/x.txt')\n", "rules/r.py:6: PermissionError while analysing //pkg:t: open() is not "
                                      "available in rule code"),
    ("    return 'a string'\n", "rules/r.py:8: rule thing (for //pkg:t): the implementation returned str; return a "
                               "list of providers"),
    ("    return [mb.Files(('pkg/x.txt',)), mb.Files(('pkg/x.txt',))]\n",
     "rules/r.py:8: rule thing (for //pkg:t): the implementation returned two Files providers; return one"),
    ("    return [mb.Image('x:1')]\n", "rules/r.py:8: rule thing (for //pkg:t): an Image needs the Stage it exports"),
    ("    return [mb.GeneratedFile('out.txt', lambda args, images: '', None, ())]\n",
     "rules/r.py:8: rule thing (for //pkg:t): GeneratedFile render must be a function defined at the top level"),
    ("    return [mb.GeneratedFile('out.txt', _render, {'when': ctx}, ())]\n",
     "rules/r.py:8: rule thing (for //pkg:t): GeneratedFile args must be plain data"),
    ("    return [mb.GeneratedFile('../out.txt', _render, None, ())]\n",
     "rules/r.py:8: rule thing (for //pkg:t): GeneratedFile path '../out.txt' must be relative"),
    ("    raise ctx.error('no good')\n", "pkg/BUILD:1: //pkg:t: no good"),
    ("    return ctx.attr('nope')\n", "pkg/BUILD:1: //pkg:t: rule thing has no attribute 'nope'"),
    ("    return ctx.base('nope')\n", "pkg/BUILD:1: //pkg:t: base('nope'): rule thing has no base_image attribute"),
], ids=["exception", "private-getattr", "open", "not-a-list", "twice", "image-without-stage", "lambda-render",
        "args-not-plain", "path-escapes", "ctx-error", "unknown-attr", "unknown-base-attr"])
def test_rule_mistakes_are_one_line_at_the_line(tmp_path, body, expected):
    source = HEAD + "def _render(args, images):\n    return ''\n" + \
        RULE.replace('    return [mb.Files(("pkg/x.txt",))]\n', body)
    write(tmp_path, {"rules/r.py": source, "pkg/BUILD": BUILD})
    assert analysis_error(tmp_path).startswith(expected)


def test_a_render_function_that_fails_is_named_at_its_line(tmp_path):
    source = HEAD + textwrap.dedent("""\
        def _render(args, images):
            return args["missing"]

        def _impl(ctx):
            return [mb.GeneratedFile("out.txt", _render, {}, ())]

        thing = mb.rule(implementation=_impl, doc="A generated file.", attrs={})
        """)
    write(tmp_path, {"rules/r.py": source, "pkg/BUILD": BUILD})
    result = RuleHarness(tmp_path).analyze("//pkg:t")["//pkg:t"]
    with pytest.raises(ConfigError) as err:
        result.render()
    assert str(err.value) == "rules/r.py:3: KeyError while rendering //pkg:t: 'missing'; fix the rule code"


def test_the_workspace_file_documents_and_parses_rules(tmp_path):
    ws = parse_workspace('rules = [\n  "rules/a.py",\n  "rules/b.py",\n]\n', tmp_path)
    assert [(m.path, m.line) for m in ws.rules] == [("rules/a.py", 2), ("rules/b.py", 3)]
    with pytest.raises(ConfigError, match=r"^WORKSPACE.toml:3: rules: rules/a.py is listed twice; remove one$"):
        parse_workspace('rules = [\n  "rules/a.py",\n  "rules/a.py",\n]\n', tmp_path)
    with pytest.raises(ConfigError, match=r"^WORKSPACE.toml:1: 'rules' must be an array of paths"):
        parse_workspace('rules = "rules/a.py"\n', tmp_path)
