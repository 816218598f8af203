"""mbuild query expressions (mbuild.query)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbuild.errors import ConfigError
from mbuild.loading.graph import TargetGraph, load_graph
from mbuild.loading.labels import Label
from mbuild.loading.schema import Attr, RuleSchema
from mbuild.query import FuncExpr, PatternExpr, SetExpr, evaluate_query, parse_query, query_patterns

SCHEMAS = {
    "py_lib": RuleSchema("py_lib", "A library.", {"deps": Attr("label_list", "Deps.")}),
    "python_image": RuleSchema("python_image", "An image.", {"deps": Attr("label_list", "Deps.")}),
    "oci_push": RuleSchema("oci_push", "Push.", {"image": Attr("label", "Image.", mandatory=True)}),
}

# //base:runtime <- //lib:a <- //lib:b <- //app:img <- //app:push
#                          ^---------------/
FILES = {
    "WORKSPACE.toml": "",
    "base/BUILD": 'py_lib(name = "runtime", visibility = ["//visibility:public"])\n',
    "lib/BUILD": 'py_lib(name = "a", deps = ["//base:runtime"], visibility = ["//visibility:public"])\n'
    'py_lib(name = "b", deps = [":a"], visibility = ["//visibility:public"])\n'
    'py_lib(name = "unused-lib")\n',
    "app/BUILD": 'python_image(name = "img", deps = ["//lib:b", "//lib:a"])\n'
    'oci_push(name = "push", image = ":img")\n',
    "app/sub/BUILD": 'py_lib(name = "tool")\n',
}


def L(text: str) -> Label:
    package, name = text[2:].split(":")
    return Label(package, name)


@pytest.fixture
def graph(tmp_path: Path) -> TargetGraph:
    for rel, text in FILES.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_graph(tmp_path, SCHEMAS)


def q(graph: TargetGraph, text: str) -> list[str]:
    result = evaluate_query(text, graph)
    assert result == sorted(result)
    return [str(label) for label in result]


def test_patterns(graph: TargetGraph) -> None:
    assert q(graph, "//app:img") == ["//app:img"]
    assert q(graph, "//lib:all") == ["//lib:a", "//lib:b", "//lib:unused-lib"]
    assert q(graph, "//app/...") == ["//app:img", "//app:push", "//app/sub:tool"]  # (package, name) order
    assert len(q(graph, "//...")) == 7
    assert evaluate_query(":a", graph, current_package="lib") == [L("//lib:a")]


def test_deps(graph: TargetGraph) -> None:
    assert q(graph, "deps(//app:push)") == ["//app:img", "//app:push", "//base:runtime", "//lib:a", "//lib:b"]
    assert q(graph, "deps(//app:push, 0)") == ["//app:push"]
    assert q(graph, "deps(//app:push, 1)") == ["//app:img", "//app:push"]
    assert q(graph, "deps(//app:img, 1)") == ["//app:img", "//lib:a", "//lib:b"]
    assert q(graph, "deps(//lib:b + //app/sub:tool)") == ["//app/sub:tool", "//base:runtime", "//lib:a", "//lib:b"]


def test_rdeps(graph: TargetGraph) -> None:
    assert q(graph, "rdeps(//..., //lib:a)") == ["//app:img", "//app:push", "//lib:a", "//lib:b"]
    assert q(graph, "rdeps(//..., //lib:a, 1)") == ["//app:img", "//lib:a", "//lib:b"]
    assert q(graph, "rdeps(//lib:all, //base:runtime)") == ["//base:runtime", "//lib:a", "//lib:b"]
    assert q(graph, "rdeps(//app/sub:tool, //lib:a)") == []


def test_kind_and_filter(graph: TargetGraph) -> None:
    assert q(graph, "kind(python_image, //...)") == ["//app:img"]
    assert q(graph, "kind('^py', //...)") == ["//app:img", "//app/sub:tool", "//base:runtime", "//lib:a", "//lib:b", "//lib:unused-lib"]
    assert q(graph, 'kind("oci_.*|python_image", deps(//app:push))') == ["//app:img", "//app:push"]
    assert q(graph, "filter('lib:[ab]$', //...)") == ["//lib:a", "//lib:b"]


def test_attr(graph: TargetGraph) -> None:
    # Labels read as //pkg:name, lists as "[a, b]"; defaults count; a missing attribute never matches.
    assert q(graph, "attr(deps, '//lib:a', //...)") == ["//app:img", "//lib:b"]
    assert q(graph, "attr(deps, '^\\[\\]$', //lib:all)") == ["//lib:unused-lib"]
    assert q(graph, "attr(image, 'app:img$', //...)") == ["//app:push"]
    assert q(graph, "attr(image, '', //lib:all)") == []
    assert q(graph, "attr(name, '^a$', //...)") == ["//lib:a"]


def test_somepath_and_allpaths(graph: TargetGraph) -> None:
    assert q(graph, "somepath(//app:push, //base:runtime)") in (
        ["//app:img", "//app:push", "//base:runtime", "//lib:a"],  # the shortest path, through //lib:a
    )
    assert q(graph, "allpaths(//app:push, //base:runtime)") == [
        "//app:img", "//app:push", "//base:runtime", "//lib:a", "//lib:b"]
    assert q(graph, "allpaths(//app:img, //lib:b)") == ["//app:img", "//lib:b"]
    assert q(graph, "somepath(//base:runtime, //app:img)") == []  # edges are followed one way only
    assert q(graph, "allpaths(//lib:unused-lib, //base:runtime)") == []
    assert q(graph, "somepath(//lib:a, //lib:a)") == ["//lib:a"]


def test_set_operations(graph: TargetGraph) -> None:
    assert q(graph, "//lib:all - //lib:a") == ["//lib:b", "//lib:unused-lib"]
    assert q(graph, "//lib:all except //lib:a") == ["//lib:b", "//lib:unused-lib"]
    assert q(graph, "deps(//app:img) ^ //lib:all") == ["//lib:a", "//lib:b"]
    assert q(graph, "deps(//app:img) intersect //lib:all") == ["//lib:a", "//lib:b"]
    assert q(graph, "//lib:a + //base:runtime") == ["//base:runtime", "//lib:a"]
    assert q(graph, "//lib:a union //base:runtime") == ["//base:runtime", "//lib:a"]
    # left-associative, equal precedence
    assert q(graph, "//lib:all - //lib:a + //lib:a") == ["//lib:a", "//lib:b", "//lib:unused-lib"]
    assert q(graph, "//lib:all - (//lib:a + //lib:b)") == ["//lib:unused-lib"]
    assert q(graph, "//lib:unused-lib - //lib:unused-lib") == []
    assert q(graph, "deps(//app:push)-//app:push^//lib:all") == ["//lib:a", "//lib:b"]


def test_parse_tree() -> None:
    expr = parse_query("deps(//a:b, 2) + kind(x, //c/...)")
    assert expr == SetExpr(
        "+",
        FuncExpr("deps", (PatternExpr("//a:b", 5), 2), 0),
        FuncExpr("kind", ("x", PatternExpr("//c/...", 25)), 17),
        15,
    )
    assert query_patterns("rdeps(//..., //a:b) - kind(x, //c:all + //a:b)") == ["//...", "//a:b", "//c:all"]


@pytest.mark.parametrize(
    "text, column, fragment",
    [
        ("deps(//a:b", 11, "expected ')'"),
        ("deps(//a:b,)", 12, "depth must be a non-negative integer"),
        ("deps(//a:b, x)", 13, "depth must be a non-negative integer"),
        ("dep(//a:b)", 1, "unknown function 'dep'; did you mean 'deps'?"),
        ("//a:b +", 8, "expected a target pattern"),
        ("//a:b //c:d", 7, "expected an operator"),
        ("(//a:b", 7, "expected ')'"),
        ("kind(//a:b)", 11, "expected ','"),
        ("rdeps(//a:b)", 12, "expected ','"),
        ("kind('x, //a:b)", 6, "unterminated quote"),
        ("//a:b ; //c:d", 7, "unexpected character ';'"),
        ("", 1, "expected a target pattern"),
        ("deps(//a:b, 1, 2)", 14, "expected ')'"),
    ],
)
def test_syntax_errors_show_position(text: str, column: int, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_query(text)
    message = str(info.value)
    assert message.startswith(f"invalid query at column {column}: "), message
    assert fragment in message
    assert repr(text) in message
    assert "\n" not in message and info.value.exit_code == 2


def test_nesting_is_bounded_and_chains_are_not(graph: TargetGraph) -> None:
    # 2,000 nested parentheses or calls were a RecursionError ("internal error", exit 1).
    for text, column in (("(" * 2000 + "//lib:a" + ")" * 2000, 101), ("deps(" * 2000 + "//lib:a" + ")" * 2000, 501)):
        with pytest.raises(ConfigError) as info:
            parse_query(text)
        message = str(info.value)
        assert message.startswith(f"invalid query at column {column}: parentheses and calls nested more than 100 "
                                  f"deep; write the expression flatter"), message
        assert len(message) < 300, message  # the text is cut short
    assert q(graph, "(" * 100 + "//lib:a" + ")" * 100) == ["//lib:a"]
    # A chain of operators is as deep as it is long: walked, never recursed into.
    chain = " + ".join(["//lib:a"] * 3000) + " - //lib:a + //app:img ^ //app:img"
    assert query_patterns(chain) == ["//lib:a", "//app:img"]
    assert q(graph, chain) == ["//app:img"]


def test_evaluation_errors(graph: TargetGraph) -> None:
    with pytest.raises(ConfigError, match=r"unknown target //lib:unused_lb; did you mean //lib:unused-lib\?"):
        evaluate_query("deps(//lib:unused_lb)", graph)
    with pytest.raises(ConfigError, match="invalid regular expression"):
        evaluate_query("kind('(', //...)", graph)


def test_lazy_loading_for_query(tmp_path: Path) -> None:
    for rel, text in {**FILES, "broken/BUILD": "((("}.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    text = "deps(//app:push) - //lib:a"
    graph = load_graph(tmp_path, SCHEMAS, query_patterns(text))
    assert "broken" not in graph.packages
    assert [str(x) for x in evaluate_query(text, graph)] == ["//app:img", "//app:push", "//base:runtime", "//lib:b"]
