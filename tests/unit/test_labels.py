"""Labels and target patterns (mbuild.loading.labels)."""

from __future__ import annotations

import pytest

from mbuild.errors import ConfigError
from mbuild.loading.labels import Label, Pattern, PatternKind, parse_label, parse_pattern


@pytest.mark.parametrize(
    "text, current, expected",
    [
        ("//infra:python_runtime", "", Label("infra", "python_runtime")),
        ("//a/b/c:target", "x", Label("a/b/c", "target")),
        (":app", "services/api", Label("services/api", "app")),
        ("app", "services/api", Label("services/api", "app")),
        ("//services/api", "", Label("services/api", "api")),
        ("//tools", "other", Label("tools", "tools")),
        ("//:root_target", "x/y", Label("", "root_target")),
        (":t", "", Label("", "t")),
        ("//pkg:name.with-dots_and-dashes", "", Label("pkg", "name.with-dots_and-dashes")),
        ("//pkg:sub/dir/file.txt", "", Label("pkg", "sub/dir/file.txt")),
        ("//visibility:public", "", Label("visibility", "public")),
    ],
)
def test_parse_label_forms(text: str, current: str, expected: Label) -> None:
    assert parse_label(text, current) == expected


def test_label_str_and_order() -> None:
    assert str(Label("infra", "x")) == "//infra:x"
    assert str(Label("", "x")) == "//:x"
    labels = [Label("b", "a"), Label("a", "z"), Label("a", "b"), Label("", "q")]
    assert sorted(labels) == [Label("", "q"), Label("a", "b"), Label("a", "z"), Label("b", "a")]
    assert parse_label(str(Label("a/b", "c"))) == Label("a/b", "c")
    assert hash(Label("a", "b")) == hash(parse_label("//a:b"))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("//", "'//' alone"),
        ("//a::b", "more than one ':'"),
        ("//a:b:c", "more than one ':'"),
        ("@repo//a:b", "external repositories"),
        ("a:b", "must start with '//'"),
        ("//a/../b:c", "'..'"),
        ("//a/./b:c", "'.'"),
        ("//a:", "empty"),
        ("//a/:b", "end with '/'"),
        (":", "empty"),
        ("//a:b c", "not allowed"),
        ("//a b:c", "package path"),
        ("/a:b", "'//'"),
        ("//a:x/../y", "'..'"),
        ("", "empty"),
    ],
)
def test_parse_label_errors_name_the_text(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_label(text, "pkg")
    message = str(info.value)
    assert f"'{text}'" in message
    assert fragment in message
    assert "\n" not in message
    assert info.value.exit_code == 2


def test_parse_label_rejects_non_string() -> None:
    with pytest.raises(ConfigError, match="expected a string"):
        parse_label(3, "")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, current, expected",
    [
        ("//pkg/...", "", Pattern(PatternKind.RECURSIVE, "pkg")),
        ("//...", "", Pattern(PatternKind.RECURSIVE, "")),
        ("//a/b/...:all", "", Pattern(PatternKind.RECURSIVE, "a/b")),
        ("//a/b/...:*", "", Pattern(PatternKind.RECURSIVE, "a/b")),
        ("//pkg:all", "", Pattern(PatternKind.PACKAGE, "pkg")),
        ("//pkg:*", "", Pattern(PatternKind.PACKAGE, "pkg")),
        ("//:all", "", Pattern(PatternKind.PACKAGE, "")),
        ("//pkg:name", "", Pattern(PatternKind.TARGET, "pkg", "name")),
        ("//pkg", "", Pattern(PatternKind.TARGET, "pkg", "pkg")),
        (":name", "here", Pattern(PatternKind.TARGET, "here", "name")),
        (":all", "here", Pattern(PatternKind.PACKAGE, "here")),
        ("...", "here", Pattern(PatternKind.RECURSIVE, "here")),
        ("sub/...", "here", Pattern(PatternKind.RECURSIVE, "here/sub")),
        ("...", "", Pattern(PatternKind.RECURSIVE, "")),
        ("sub:x", "here", Pattern(PatternKind.TARGET, "here/sub", "x")),
    ],
)
def test_parse_pattern(text: str, current: str, expected: Pattern) -> None:
    assert parse_pattern(text, current) == expected


@pytest.mark.parametrize("text", ["//a/...:x", "@r//...", "", "//a/../...", "//a::b", "//a b/..."])
def test_parse_pattern_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_pattern(text)
    assert "target pattern" in str(info.value)
    if text:
        assert text in str(info.value)


def test_pattern_str_roundtrip_and_matches() -> None:
    for text in ["//a/...", "//...", "//a:all", "//a:b"]:
        assert str(parse_pattern(text)) == text
    rec = parse_pattern("//a/...")
    assert rec.matches(Label("a", "x"))
    assert rec.matches(Label("a/b/c", "x"))
    assert not rec.matches(Label("ab", "x"))
    assert not rec.matches(Label("", "x"))
    assert parse_pattern("//...").matches(Label("", "x"))
    pkg = parse_pattern("//a:all")
    assert pkg.matches(Label("a", "y")) and not pkg.matches(Label("a/b", "y"))
    one = parse_pattern("//a:b")
    assert one.label == Label("a", "b")
    assert one.matches(Label("a", "b")) and not one.matches(Label("a", "c"))
    assert pkg.label is None
