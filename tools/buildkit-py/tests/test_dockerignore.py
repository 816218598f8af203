"""`.dockerignore` semantics as BuildKit's sender applies them (moby/patternmatcher + fsutil)."""

from __future__ import annotations

import pytest

from buildkit.dockerignore import IncludeMatcher, Matcher, go_clean, parse_dockerignore, read_dockerignore


@pytest.mark.parametrize(
    "patterns, path, excluded",
    [
        # plain names and globs
        (["foo"], "foo", True),
        (["foo"], "foo/bar/baz", True),  # a matching directory takes its subtree
        (["foo"], "foobar", False),
        (["foo"], "a/foo", False),  # not anchored anywhere but the root
        (["*.env"], "secret.env", True),
        (["*.env"], "sub/secret.env", False),  # * does not cross /
        (["*/*.env"], "sub/secret.env", True),
        (["a?c"], "abc", True),
        (["a?c"], "a/c", False),
        ([".env"], ".env", True),
        ([".env"], ".envrc", False),
        (["*.txt"], "README.TXT", False),  # case-sensitive, unlike docker-py's fnmatch
        # **
        (["**/node_modules"], "node_modules", True),
        (["**/node_modules"], "a/b/node_modules", True),
        (["**/node_modules"], "a/b/node_modules/pkg/index.js", True),
        (["**/node_modules"], "a/node_modules_x", False),
        (["**/*.go"], "a/b/c.go", True),
        (["**/*.go"], "c.go", True),
        (["a/**/b"], "a/b", True),
        (["a/**/b"], "a/x/y/b", True),
        (["a/**"], "a/x", True),
        (["a/**"], "a", False),
        (["**"], "anything/at/all", True),
        (["**foo"], "a/xfoo", True),  # Go's suffix fast path
        (["a**"], "abc/d", True),
        # trailing / and leading / or ./
        (["node_modules/"], "node_modules", True),
        (["node_modules/"], "node_modules/x", True),
        (["/build"], "build/out", True),
        (["./build"], "build", True),
        (["a//b/../c"], "a/c", True),
        (["../x"], "x", False),  # Go keeps the "..": never matches
        # exceptions and last match wins
        (["*.md", "!README.md"], "README.md", False),
        (["*.md", "!README.md"], "CHANGES.md", True),
        (["!README.md", "*.md"], "README.md", True),
        (["docs", "!docs/keep.txt"], "docs/keep.txt", False),
        (["docs", "!docs/keep.txt"], "docs/other.txt", True),
        (["docs", "!docs/keep.txt"], "docs", True),
        (["docs", "!docs/keep.txt", "docs/keep.txt"], "docs/keep.txt", True),
        (["**/*.log", "!important.log"], "important.log", False),
        (["**/*.log", "!important.log"], "x/important.log", True),
        # classes and escapes, Go style
        (["[^a]x"], "bx", True),
        (["[^a]x"], "ax", False),
        (["[!a]x"], "!x", True),  # "!" in a Go class is literal
        (["[!a]x"], "bx", False),
        (["f[0-9]"], "f7", True),
        (["esc\\*"], "esc*", True),
        (["esc\\*"], "escX", False),
    ],
)
def test_exclude_table(patterns, path, excluded):
    assert Matcher(patterns).excluded(path) is excluded


def test_no_implicit_dockerignore_exception():
    # docker-py's PatternMatcher adds "!.dockerignore"; BuildKit does not.
    assert Matcher(["*"]).excluded(".dockerignore")
    assert Matcher([".dockerignore"]).excluded(".dockerignore")


def test_read_dockerignore(tmp_path):
    f = tmp_path / ".dockerignore"
    f.write_bytes(
        b"\xef\xbb\xbf# comment\n"
        b"\n"
        b"   \n"
        b"  *.env  \r\n"
        b"/build/\n"
        b"./dist\n"
        b"! keep.env\n"
        b"  # not a comment: indented\n"
        b"a/../b\n"
        b"node_modules/\n"
    )
    assert read_dockerignore(f) == ["*.env", "build", "dist", "!keep.env", "# not a comment: indented", "b",
                                    "node_modules"]
    assert read_dockerignore(tmp_path / "missing") == []


def test_parse_keeps_first_line_comment_after_bom():
    assert parse_dockerignore("\ufeff#x\ny") == ["y"]


def test_go_clean():
    assert go_clean("") == "."
    assert go_clean("./a/") == "a"
    assert go_clean("/../a") == "/a"
    assert go_clean("../a") == "../a"
    assert go_clean("a/b/../../..") == ".."


def test_bang_alone_is_invalid():
    with pytest.raises(ValueError):
        Matcher(["!"])


@pytest.mark.parametrize("bad", ["a[", "x\\", "[]"])
def test_bad_glob_is_rejected(bad):
    with pytest.raises(ValueError):
        Matcher([bad])


@pytest.mark.parametrize(
    "patterns, directory, expected",
    [
        (["docs"], "docs", False),  # no exceptions at all
        (["docs", "!docs/keep.txt"], "docs", True),
        (["docs", "!docs/keep.txt"], "docs/sub", False),
        (["docs", "!other/keep.txt"], "docs", False),
        (["docs", "!docs/a/*.txt"], "docs", True),
        (["docs", "!docs/a/*.txt"], "docs/a", True),
        (["docs", "!docs/a/*.txt"], "docs/b", False),
        (["docs", "!**/keep"], "docs/deep/er", True),
        (["*", "!src/**"], "src", True),
        (["*", "!src/**"], "test", False),
        (["*", "!*/keep"], "anything", True),
        (["*", "!*/keep"], "a/b", False),  # the exception is only two levels deep
    ],
)
def test_may_contain_exception(patterns, directory, expected):
    assert Matcher(patterns).may_contain_exception(directory) is expected


def test_include_matcher():
    m = IncludeMatcher(["src", "Dockerfile", "lib/*.py"])
    assert m.included("src/a/b.c")
    assert m.included("Dockerfile")
    assert m.included("lib/x.py")
    assert not m.included("lib/x.txt")
    assert not m.included("README")
    assert m.may_contain_match("lib")
    assert not m.may_contain_match("docs")
    assert not m.may_contain_match("lib/sub")  # lib/*.py is only one level deep


def test_incremental_matches_from_scratch():
    m = Matcher(["a", "!a/b", "a/b/c", "**/x"])
    for path in ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/d", "q/x/y", "q/y"]:
        state, matched = 0, False
        parts = path.split("/")
        for i in range(len(parts)):
            matched, state = m.match_step("/".join(parts[: i + 1]), state)
        assert matched == m.excluded(path), path
    assert [m.excluded(p) for p in ["a", "a/b", "a/b/c", "a/b/c/d", "a/b/d", "q/x/y", "q/y"]] == [
        True, False, True, True, False, True, False]


def test_index_of_exception_free_lists_agrees_with_the_ordered_scan():
    """The set index for lists without ``!`` gives what the pattern-by-pattern
    scan gives, for matches and for "could anything below match"."""
    import random

    rng = random.Random(7)
    names = ["a", "b", "src", "x.py", "node_modules", "c.txt"]
    kinds = ["{p}", "{p}/**", "**/{n}", "{p}/*", "*.py", "{p}*", "{p}/?", "[ab]/{n}", "../{n}", "{p}/"]

    def path(depth):
        return "/".join(rng.choice(names) for _ in range(depth))

    for _ in range(300):
        patterns = [rng.choice(kinds).format(p=path(rng.randint(1, 3)), n=rng.choice(names))
                    for _ in range(rng.randint(1, 8))]
        fast = IncludeMatcher(patterns)
        slow = IncludeMatcher(patterns)
        slow._index = None
        assert fast._index is not None
        for _ in range(30):
            p = path(rng.randint(1, 4))
            assert fast.matches(p) == slow.matches(p), (patterns, p)
            assert fast.may_contain_match(p) == slow.may_contain_match(p), (patterns, p)


def test_literal_includes_are_set_lookups():
    files = [f"pkg/d{i // 100}/f{i}.py" for i in range(20_000)]
    m = IncludeMatcher([*files, "extra/**"])
    assert m._index.others_match and len(m._index.others) == 1  # only the glob is tried per path
    assert all(m.matches(f) for f in files[::7]) and m.matches("extra/x/y")
    assert not m.matches("pkg/d0/other.py")
    assert m.may_contain_match("pkg/d3") and m.may_contain_match("pkg")
    assert not m.may_contain_match("pkg/elsewhere")
