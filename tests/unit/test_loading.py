"""The loading phase: WORKSPACE.toml, rule schemas, BUILD files, the target graph."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mbuild.errors import ConfigError
from mbuild.loading.build_files import BuildFileLoader
from mbuild.loading.graph import TargetGraph, is_visible, load_graph, packages_for_patterns
from mbuild.loading.labels import Label
from mbuild.loading.packages import build_file, discover_packages
from mbuild.loading.schema import Attr, Location, RuleSchema, coerce_attrs, render_docs
from mbuild.loading.workspace import (
    BaseImage,
    find_workspace,
    load_workspace,
    parse_size,
    parse_workspace,
    write_image_digest,
)

# ---------------------------------------------------------------------------
# a small fake rule registry

SCHEMAS = {
    "py_lib": RuleSchema(
        "py_lib",
        "A Python library.",
        {
            "srcs": Attr("string_list", "Source files."),
            "deps": Attr("label_list", "Libraries this one imports."),
        },
    ),
    "python_image": RuleSchema(
        "python_image",
        "A Python container image.",
        {
            "base": Attr("string", "Base image name from WORKSPACE.toml.", mandatory=True),
            "srcs": Attr("string_list", "Source files."),
            "deps": Attr("label_list", "Libraries."),
            "runtime": Attr("label", "The runtime target.", default=None),
            "env": Attr("string_dict", "Environment variables."),
            "port": Attr("int", "Exposed port.", default=8080),
            "debug": Attr("bool", "Debug build."),
        },
    ),
}

DIGEST = "sha256:" + "ab" * 32
DIGEST2 = "sha256:" + "cd" * 32


def write(root: Path, files: dict[str, str]) -> Path:
    """Create files under root (plus an empty WORKSPACE.toml unless given)."""
    files = {"WORKSPACE.toml": "", **files}
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def load_err(root: Path, package: str = "pkg") -> str:
    with pytest.raises(ConfigError) as info:
        BuildFileLoader(root, SCHEMAS).load_package(package)
    message = str(info.value)
    assert "\n" not in message, message
    assert info.value.exit_code == 2
    return message


def graph_err(root: Path, patterns=None) -> str:
    with pytest.raises(ConfigError) as info:
        load_graph(root, SCHEMAS, patterns)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------------------
# WORKSPACE.toml

FULL_WORKSPACE = f"""\
name = "mono"
buildkit = "unix:///run/buildkit/buildkitd.sock"
output_dir = "out"
ca_bundle = "certs/ca.pem"
source_date_epoch = 1700000000

# the base images
[images.python]
ref = "python:3.11-slim"
digest = "{DIGEST}"

[images.node]
ref = "node:20"

[registry.mirrors]
"docker.io" = ["https://mirror.example.com", "https://mirror2.example.com"]

[cache]
dir = "cachedir"
max_size = "2GiB"
remote = "grpcs://cache.example.com:443"
remote_upload = false
remote_instance = "main"
remote_headers = {{ "Authorization" = "Bearer x" }}
"""


def test_workspace_full(tmp_path: Path) -> None:
    write(tmp_path, {"WORKSPACE.toml": FULL_WORKSPACE, "certs/ca.pem": "pem"})
    ws = load_workspace(tmp_path)
    root = tmp_path.resolve()
    assert ws.root == root
    assert ws.name == "mono"
    assert ws.buildkit == "unix:///run/buildkit/buildkitd.sock"
    assert ws.output_dir == root / "out"
    assert ws.ca_bundle == root / "certs/ca.pem"
    assert ws.source_date_epoch == 1700000000
    assert ws.images == {
        "python": BaseImage("python", "python:3.11-slim", DIGEST),
        "node": BaseImage("node", "node:20", None),
    }
    assert ws.images["python"].pinned_ref == f"python:3.11-slim@{DIGEST}"
    assert ws.images["node"].pinned_ref == "node:20"
    assert ws.registry_mirrors == {"docker.io": ("https://mirror.example.com", "https://mirror2.example.com")}
    assert ws.cache.dir == root / "cachedir"
    assert ws.cache.max_size == 2 * 1024**3
    assert ws.cache.remote == "grpcs://cache.example.com:443"
    assert ws.cache.remote_upload is False
    assert ws.cache.remote_instance == "main"
    assert ws.cache.remote_headers == {"Authorization": "Bearer x"}


def test_workspace_defaults(tmp_path: Path) -> None:
    ws = parse_workspace("", tmp_path)
    assert ws.name == tmp_path.name
    assert ws.buildkit == "docker://"
    assert ws.output_dir == tmp_path / "mbuild-out"
    assert ws.cache.dir == Path("~/.cache/mbuild").expanduser()
    assert ws.cache.max_size == 10 * 1000**3
    assert ws.cache.remote is None and ws.cache.remote_upload is False  # read-only unless asked (CI: --remote-upload)
    assert ws.cache.remote_headers == {}
    assert ws.ca_bundle is None and ws.source_date_epoch is None
    assert ws.images == {} and ws.registry_mirrors == {}


def test_find_workspace_walks_up(tmp_path: Path) -> None:
    write(tmp_path, {"a/b/c/file.txt": ""})
    assert find_workspace(tmp_path / "a/b/c") == tmp_path.resolve()
    assert find_workspace(tmp_path / "a/b/c/file.txt") == tmp_path.resolve()
    assert find_workspace(tmp_path) == tmp_path.resolve()


def test_find_workspace_missing(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    assert not any((p / "WORKSPACE.toml").exists() for p in tmp_path.parents), "tmp_path must be outside a workspace"
    with pytest.raises(ConfigError, match="no WORKSPACE.toml"):
        find_workspace(tmp_path / "x")


def test_workspace_malformed_toml_reports_line(tmp_path: Path) -> None:
    text = 'name = "x"\n\n[cache]\nmax_size = 10GB\n'
    with pytest.raises(ConfigError) as info:
        parse_workspace(text, tmp_path)
    message = str(info.value)
    assert message.startswith("WORKSPACE.toml:4: invalid TOML:")
    assert "column" in message and "\n" not in message


def test_workspace_unterminated_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^WORKSPACE.toml:2: invalid TOML"):
        parse_workspace('name = "x"\n[images\n', tmp_path)


def test_workspace_unknown_top_level_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_workspace('name = "x"\nbuildkit_adress = "docker://"\n', tmp_path)
    assert str(info.value) == "WORKSPACE.toml:2: unknown key 'buildkit_adress'; did you mean 'buildkit'?"


def test_workspace_unknown_key_in_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_workspace('[cache]\ndir = "x"\nmax_sise = "1GB"\n', tmp_path)
    assert str(info.value) == "WORKSPACE.toml:3: unknown key 'max_sise' in [cache]; did you mean 'max_size'?"
    with pytest.raises(ConfigError, match=r"WORKSPACE.toml:2: unknown key 'tag' in \[images.py\]"):
        parse_workspace('[images.py]\ntag = "x"\nref = "python:3"\n', tmp_path)


@pytest.mark.parametrize(
    "text, line, key",
    [
        ('name = 3\n', 1, "'name' must be a string, got an integer"),
        ('\nsource_date_epoch = "yesterday"\n', 2, "'source_date_epoch' must be an integer"),
        ('[cache]\nremote_upload = "yes"\n', 2, "'cache.remote_upload' must be true or false, got a string"),
        ('[cache]\nmax_size = 10\n', 2, "'cache.max_size' must be a size string"),
        ('[cache]\nmax_size = "lots"\n', 2, "cache.max_size must be a size"),
        ('[cache]\nremote = "cache.example.com"\n', 2, "cache.remote must be a URL"),
        ('images = "python"\n', 1, "'images' must be a table"),
        ('[images.py]\nref = "python:3"\ndigest = "sha256:abc"\n', 3, "images.py.digest must look like"),
        ('[images.py]\ndigest = "' + DIGEST + '"\n', 1, "[images.py] needs ref ="),
        ('[images.py]\nref = "python@' + DIGEST + '"\n', 2, "must not contain '@digest'"),
        ('[registry.mirrors]\n"docker.io" = "https://m"\n', 2, "must be an array of mirror URLs"),
        ('[registry]\nmirror = {}\n', 2, "unknown key 'mirror' in [registry]; did you mean 'mirrors'?"),
        ('buildkit = "localhost"\n', 1, "'buildkit' must be an address"),
        ('ca_bundle = "nope.pem"\n', 1, "ca_bundle 'nope.pem' does not exist"),
    ],
)
def test_workspace_wrong_types_name_key_and_line(tmp_path: Path, text: str, line: int, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_workspace(text, tmp_path)
    message = str(info.value)
    assert message.startswith(f"WORKSPACE.toml:{line}: "), message
    assert key in message
    assert "\n" not in message


def test_parse_size() -> None:
    assert parse_size("10GB") == 10 * 1000**3
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size("100") == 100
    assert parse_size("7kb") == 7000
    assert parse_size("ten") is None
    assert parse_size("10XB") is None


def test_write_image_digest_replaces_and_keeps_text(tmp_path: Path) -> None:
    write(tmp_path, {"WORKSPACE.toml": FULL_WORKSPACE, "certs/ca.pem": ""})
    write_image_digest(tmp_path, "python", DIGEST2)
    text = (tmp_path / "WORKSPACE.toml").read_text()
    assert text == FULL_WORKSPACE.replace(DIGEST, DIGEST2)
    assert load_workspace(tmp_path).images["python"].digest == DIGEST2


def test_write_image_digest_inserts_after_ref(tmp_path: Path) -> None:
    write(tmp_path, {"WORKSPACE.toml": FULL_WORKSPACE, "certs/ca.pem": ""})
    write_image_digest(tmp_path / "WORKSPACE.toml", "node", DIGEST2)
    text = (tmp_path / "WORKSPACE.toml").read_text()
    assert f'[images.node]\nref = "node:20"\ndigest = "{DIGEST2}"\n\n[registry.mirrors]' in text
    assert "# the base images" in text
    ws = load_workspace(tmp_path)
    assert ws.images["node"].digest == DIGEST2 and ws.images["python"].digest == DIGEST


def test_write_image_digest_inline_table_and_last_line(tmp_path: Path) -> None:
    write(tmp_path, {"WORKSPACE.toml": '[images]\npy = { ref = "python:3" }  # keep\n[images.last]\nref = "x"'})
    write_image_digest(tmp_path, "py", DIGEST)
    write_image_digest(tmp_path, "last", DIGEST2)
    text = (tmp_path / "WORKSPACE.toml").read_text()
    assert "# keep" in text
    ws = load_workspace(tmp_path)
    assert ws.images["py"].digest == DIGEST and ws.images["last"].digest == DIGEST2


def test_write_image_digest_errors(tmp_path: Path) -> None:
    write(tmp_path, {"WORKSPACE.toml": '[images.py]\nref = "python:3"\n'})
    with pytest.raises(ConfigError, match=r"no \[images.node\] table"):
        write_image_digest(tmp_path, "node", DIGEST)
    with pytest.raises(ConfigError, match="invalid digest"):
        write_image_digest(tmp_path, "py", "sha256:xyz")
    assert (tmp_path / "WORKSPACE.toml").read_text() == '[images.py]\nref = "python:3"\n'


# ---------------------------------------------------------------------------
# schema

WHERE = Location("pkg/BUILD", 7)


def test_coerce_attrs_types_and_defaults() -> None:
    attrs = coerce_attrs(
        SCHEMAS["python_image"],
        {
            "name": "app",
            "base": "python",
            "srcs": ["a.py", "b.py"],
            "deps": [":lib", "//other:x", "y"],
            "runtime": "//infra:rt",
            "env": {"A": "1"},
            "debug": True,
        },
        WHERE,
        "pkg",
    )
    assert attrs == {
        "name": "app",
        "visibility": ("//visibility:private",),
        "tags": (),
        "base": "python",
        "srcs": ("a.py", "b.py"),
        "deps": (Label("pkg", "lib"), Label("other", "x"), Label("pkg", "y")),
        "runtime": Label("infra", "rt"),
        "env": {"A": "1"},
        "port": 8080,
        "debug": True,
    }
    defaults = coerce_attrs(SCHEMAS["python_image"], {"name": "a", "base": "b", "runtime": None}, WHERE, "pkg")
    assert defaults["runtime"] is None and defaults["env"] == {} and defaults["debug"] is False
    assert defaults["deps"] == ()


def test_coerce_unknown_attribute_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        coerce_attrs(SCHEMAS["python_image"], {"name": "a", "base": "b", "srcz": []}, WHERE, "pkg")
    assert str(info.value) == "pkg/BUILD:7: unknown attribute 'srcz' of python_image; did you mean 'srcs'?"


def test_coerce_missing_mandatory() -> None:
    with pytest.raises(ConfigError) as info:
        coerce_attrs(SCHEMAS["python_image"], {"name": "a"}, WHERE, "pkg")
    assert str(info.value).startswith("pkg/BUILD:7: missing mandatory attribute 'base' of python_image")
    with pytest.raises(ConfigError, match="missing mandatory attribute 'name' of py_lib"):
        coerce_attrs(SCHEMAS["py_lib"], {}, WHERE, "pkg")


@pytest.mark.parametrize(
    "attr, value, expected",
    [
        ("srcs", 3, "attribute 'srcs' of python_image must be a list of strings, got int"),
        ("srcs", ["a", 1], "attribute 'srcs' of python_image must be a list of strings, got a list containing int 1"),
        ("base", ["x"], "attribute 'base' of python_image must be a string, got list"),
        ("port", "80", "attribute 'port' of python_image must be an integer, got string"),
        ("port", True, "attribute 'port' of python_image must be an integer, got bool"),
        ("debug", 1, "attribute 'debug' of python_image must be True or False, got int"),
        ("env", {"A": 1}, "attribute 'env' of python_image must be a dict of string to string"),
        ("env", ["A"], "attribute 'env' of python_image must be a dict of string to string, got list"),
        ("deps", "//a:b", "attribute 'deps' of python_image must be a list of label strings, got string"),
        ("runtime", 5, "attribute 'runtime' of python_image must be a label string, got int"),
        ("runtime", "a:b", "attribute 'runtime' of python_image: invalid label 'a:b'"),
        ("deps", ["//x::y"], "attribute 'deps' of python_image: invalid label '//x::y'"),
    ],
)
def test_coerce_wrong_types(attr: str, value, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        coerce_attrs(SCHEMAS["python_image"], {"name": "a", "base": "b", attr: value}, WHERE, "pkg")
    assert str(info.value).startswith(f"pkg/BUILD:7: {expected}")


@pytest.mark.parametrize("value", ['{1: "a"}', '{True: "a", "b": "c"}', '{1: "a", "1": "b"}'])
def test_dict_keys_reach_the_attribute_check_unchanged(tmp_path: Path, value: str) -> None:
    """Values cross from Starlark as JSON, which would turn key 1 into "1"."""
    write(tmp_path, {"pkg/BUILD": f'python_image(name = "a", base = "b", env = {value})\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:1: attribute 'env' of python_image must be a dict of string to string"), message


def test_values_cross_from_starlark_intact(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'python_image(name = "a", base = "b", port = 12345678901, '
                                  'env = {"Z": "é✓", "A": "\\u2028"}, srcs = ["x"] + glob(["*.py"]))\n',
                     "pkg/m.py": ""})
    attrs = BuildFileLoader(tmp_path, SCHEMAS).load_package("pkg").targets["a"].attrs
    assert attrs["port"] == 12345678901
    assert list(attrs["env"].items()) == [("Z", "é✓"), ("A", "\u2028")]  # order kept
    assert attrs["srcs"] == ("m.py", "x") or attrs["srcs"] == ("x", "m.py")


def test_coerce_visibility() -> None:
    schema = SCHEMAS["py_lib"]

    def vis(value, default=None):
        return coerce_attrs(schema, {"name": "a", "visibility": value}, WHERE, "pkg", default)["visibility"]

    assert vis(["//visibility:public"]) == ("//visibility:public",)
    assert vis([":__pkg__", "//other:__subpackages__"]) == ("//pkg:__pkg__", "//other:__subpackages__")
    assert vis(None, ("//x:__pkg__",)) == ("//x:__pkg__",)
    for bad, fragment in [
        (["//visibility:friends"], "invalid visibility '//visibility:friends'"),
        (["//pkg:group"], "package groups are not supported"),
        (["//visibility:public", "//a:__pkg__"], "mixes"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            vis(bad)


def test_coerce_bad_name() -> None:
    with pytest.raises(ConfigError, match=r"pkg/BUILD:7: invalid name 'a b' of py_lib"):
        coerce_attrs(SCHEMAS["py_lib"], {"name": "a b"}, WHERE, "pkg")


def test_schema_declarations() -> None:
    with pytest.raises(ValueError):
        Attr("float", "x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RuleSchema("r", "doc", {"name": Attr("string", "x")})
    docs = render_docs(SCHEMAS["python_image"])
    assert "# python_image" in docs and "| `base` | string | mandatory |" in docs
    assert "| `port` | int | `8080` | Exposed port. |" in docs
    assert list(SCHEMAS["py_lib"].all_attrs) == ["name", "visibility", "tags", "srcs", "deps"]


# ---------------------------------------------------------------------------
# packages


def test_discover_packages_skips_ignored_dirs(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "BUILD": "",
            "a/BUILD.bazel": "",
            "a/b/BUILD": "",
            "a/b/c/d/BUILD": "",
            "nobuild/x.txt": "",
            ".git/BUILD": "",
            ".hidden/BUILD": "",
            "node_modules/m/BUILD": "",
            ".venv/BUILD": "",
            "mbuild-out/BUILD": "",
            "custom-out/BUILD": "",
            "dir/BUILD/not-a-file": "",
        },
    )
    assert discover_packages(tmp_path, skip=["custom-out"]) == ["", "a", "a/b", "a/b/c/d"]
    assert discover_packages(tmp_path, "a/b") == ["a/b", "a/b/c/d"]
    assert discover_packages(tmp_path, "missing") == []
    assert build_file(tmp_path, "a").name == "BUILD.bazel"
    assert build_file(tmp_path, "nobuild") is None
    assert build_file(tmp_path, "dir") is None


def test_build_bazel_wins_over_build(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "from_build")', "pkg/BUILD.bazel": 'py_lib(name = "from_bazel")'})
    package = BuildFileLoader(tmp_path, SCHEMAS).load_package("pkg")
    assert list(package.targets) == ["from_bazel"]
    assert package.build_file == "pkg/BUILD.bazel"


# ---------------------------------------------------------------------------
# BUILD files


def test_load_package_records_targets_and_lines(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/BUILD": '''\
# a comment
py_lib(name = "lib", srcs = ["a.py"])

python_image(
    name = "app",
    base = "python",
    deps = [":lib", "//other:x"],
    tags = ["manual"],
)
''',
        },
    )
    package = BuildFileLoader(tmp_path, SCHEMAS).load_package("pkg")
    assert package.name == "pkg" and package.build_file == "pkg/BUILD"
    assert list(package.targets) == ["lib", "app"]
    lib, app = package.targets["lib"], package.targets["app"]
    assert lib.label == Label("pkg", "lib") and lib.kind == "py_lib"
    assert lib.location == Location("pkg/BUILD", 2) == ("pkg/BUILD", 2)
    assert app.location == Location("pkg/BUILD", 4)
    assert app.deps == (Label("other", "x"), Label("pkg", "lib"))
    assert app.tags == ("manual",) and app.visibility == ("//visibility:private",)
    assert app.attrs["srcs"] == ()


def test_root_package(tmp_path: Path) -> None:
    write(tmp_path, {"BUILD": 'py_lib(name = "r", srcs = glob(["*.txt"]))\n', "a.txt": "", "sub/BUILD": ""})
    package = BuildFileLoader(tmp_path, SCHEMAS).load_package("")
    target = package.targets["r"]
    assert target.label == Label("", "r") and str(target.label) == "//:r"
    assert target.location == Location("BUILD", 1)
    assert target.attrs["srcs"] == ("a.txt",)


def test_syntax_error_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\n\npy_lib(name = "b",\n  srcs = ["x"]]\n)\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:4: syntax error:"), message


def test_runtime_error_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\nx = 1 + "s"\n'})
    assert load_err(tmp_path).startswith("pkg/BUILD:2: Operation `+` not supported")


def test_unknown_function_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": '\n\npy_libb(name = "a")\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:3: Variable `py_libb` not found"), message
    assert "py_lib" in message


def test_fail_in_build_file(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'fail("unsupported setup; use X")\n'})
    assert load_err(tmp_path) == "pkg/BUILD:1: fail: unsupported setup; use X"


def test_unknown_attribute_with_suggestion_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\n\npython_image(\n    name = "b",\n    base = "p",\n    srcz = [],\n)\n'})
    assert load_err(tmp_path) == "pkg/BUILD:3: unknown attribute 'srcz' of python_image; did you mean 'srcs'?"


def test_wrong_type_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a", srcs = 3)\n'})
    assert load_err(tmp_path) == "pkg/BUILD:1: attribute 'srcs' of py_lib must be a list of strings, got int"


def test_missing_mandatory_at_file_line(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": '\npython_image(name = "a")\n'})
    assert load_err(tmp_path).startswith("pkg/BUILD:2: missing mandatory attribute 'base' of python_image")


def test_non_plain_attribute_value(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'x = 1\npy_lib(name = "a", srcs = lambda: 1)\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:2: rule attributes must be plain values"), message


def test_positional_arguments_rejected(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib("a")\n'})
    assert load_err(tmp_path).startswith("pkg/BUILD:1: rule py_lib() takes keyword arguments only")


def test_def_not_allowed_in_build(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'x = 1\ndef f():\n    pass\n'})
    assert load_err(tmp_path).startswith("pkg/BUILD:2: `def` is not allowed in BUILD files")


def test_duplicate_target_names_both_lines(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\npy_lib(name = "b")\npy_lib(name = "a")\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:3: duplicate target name 'a'")
    assert "pkg/BUILD:1" in message


def test_no_io_builtins(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'print("hi")\n'})
    assert "not found" in load_err(tmp_path)


def test_missing_package(tmp_path: Path) -> None:
    write(tmp_path, {})
    assert "no package '//nope'" in load_err(tmp_path, "nope")


def test_package_name_and_default_visibility(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a/b/BUILD": 'package(default_visibility = ["//c:__pkg__"])\n'
            'py_lib(name = package_name().replace("/", "_"))\n'
            'py_lib(name = "own", visibility = ["//visibility:public"])\n',
        },
    )
    package = BuildFileLoader(tmp_path, SCHEMAS).load_package("a/b")
    assert package.targets["a_b"].visibility == ("//c:__pkg__",)
    assert package.targets["own"].visibility == ("//visibility:public",)


def test_package_after_rule_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\npackage(default_visibility = [])\n'})
    assert load_err(tmp_path).startswith("pkg/BUILD:2: package() must come before any rule")


def test_glob(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pkg/BUILD": '\n'.join(
                [
                    'py_lib(name = "py", srcs = glob(["*.py"]))',
                    'py_lib(name = "deep", srcs = glob(["**/*.py"], exclude = ["**/test_*.py", "gen/**"]))',
                    'py_lib(name = "all", srcs = glob(["**"]))',
                    'py_lib(name = "none", srcs = glob(["*.nothing"]))',
                    'py_lib(name = "q", srcs = glob(["?.py", "src/*/x.py"]))',
                ]
            ),
            "pkg/b.py": "",
            "pkg/a.py": "",
            "pkg/README.md": "",
            "pkg/src/x.py": "",
            "pkg/src/test_x.py": "",
            "pkg/src/inner/x.py": "",
            "pkg/gen/g.py": "",
            "pkg/sub/BUILD": "",
            "pkg/sub/s.py": "",
            "pkg/.hidden/h.py": "",
            "pkg/node_modules/m.py": "",
        },
    )
    targets = BuildFileLoader(tmp_path, SCHEMAS).load_package("pkg").targets
    assert targets["py"].attrs["srcs"] == ("a.py", "b.py")
    assert targets["deep"].attrs["srcs"] == ("a.py", "b.py", "src/inner/x.py", "src/x.py")
    assert targets["all"].attrs["srcs"] == (
        "BUILD", "README.md", "a.py", "b.py", "gen/g.py", "src/inner/x.py", "src/test_x.py", "src/x.py",
    )
    assert targets["none"].attrs["srcs"] == ()
    assert targets["q"].attrs["srcs"] == ("a.py", "b.py", "src/inner/x.py")


def test_glob_symlink_leaving_workspace_is_ignored(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    write(ws, {"pkg/BUILD": 'py_lib(name = "a", srcs = glob(["*"]))\n', "pkg/ok.txt": "", "other.txt": ""})
    (tmp_path / "outside.txt").write_text("secret")
    (ws / "pkg/evil.txt").symlink_to(tmp_path / "outside.txt")
    (ws / "pkg/inside.txt").symlink_to(ws / "other.txt")
    (ws / "pkg/dirlink").symlink_to(tmp_path)
    srcs = BuildFileLoader(ws, SCHEMAS).load_package("pkg").targets["a"].attrs["srcs"]
    assert srcs == ("BUILD", "inside.txt", "ok.txt")


@pytest.mark.parametrize(
    "call, fragment",
    [
        ('glob(["../x/*.py"])', "invalid glob pattern '../x/*.py'"),
        ('glob(["/etc/*"])', "remove the leading '/'"),
        ('glob(["a**/b"])', "'**' must be a whole path segment"),
        ('glob("*.py")', "must be a list of patterns"),
        ('glob([])', "needs at least one pattern"),
        ('glob(["*.none"], allow_empty = False)', "matched no files"),
        ('glob(["*.py"], [], True, 4)', "glob() takes at most 3 arguments"),
    ],
)
def test_glob_errors(tmp_path: Path, call: str, fragment: str) -> None:
    write(tmp_path, {"pkg/BUILD": f'x = 1\npy_lib(name = "a", srcs = {call})\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:2: "), message
    assert fragment in message


MACROS = '''\
def lib_pair(name, visibility = None):
    """Two libraries; the second depends on the first."""
    py_lib(name = name + "_a", srcs = glob(["*.py"]), visibility = visibility)
    py_lib(name = name + "_b", deps = [":" + name + "_a"])

def in_package():
    return package_name()

def broken():
    fail("broken macro")
'''


def test_load_macro_file(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "rules/macros.bzl": MACROS,
            "pkg/BUILD": 'load("//rules:macros.bzl", "lib_pair", where = "in_package")\n\nlib_pair("x")\npy_lib(name = where())\n',
            "pkg/m.py": "",
            "other/BUILD": 'load("//rules:macros.bzl", "lib_pair")\nlib_pair(name = "y")\n',
        },
    )
    loader = BuildFileLoader(tmp_path, SCHEMAS)
    package = loader.load_package("pkg")
    assert list(package.targets) == ["x_a", "x_b", "pkg"]
    assert package.targets["x_a"].location == Location("pkg/BUILD", 3)
    assert package.targets["x_a"].attrs["srcs"] == ("m.py",)
    assert package.targets["x_b"].deps == (Label("pkg", "x_a"),)
    assert package.bzl_files == ("rules/macros.bzl",)
    other = loader.load_package("other")  # macros.bzl comes from the cache
    assert list(other.targets) == ["y_a", "y_b"]
    assert other.targets["y_a"].attrs["srcs"] == ()
    assert other.bzl_files == ("rules/macros.bzl",)


def test_load_relative_and_transitive(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "rules/base.bzl": 'DEFAULT_SRCS = ["main.py"]\n',
            "rules/defs.bzl": 'load(":base.bzl", "DEFAULT_SRCS")\nSRCS = DEFAULT_SRCS + ["extra.py"]\n',
            "rules/BUILD": 'load(":defs.bzl", "SRCS")\npy_lib(name = "r", srcs = SRCS)\n',
        },
    )
    package = BuildFileLoader(tmp_path, SCHEMAS).load_package("rules")
    assert package.targets["r"].attrs["srcs"] == ("main.py", "extra.py")
    assert package.bzl_files == ("rules/base.bzl", "rules/defs.bzl")


def test_error_in_macro_reports_bzl_line_and_caller(tmp_path: Path) -> None:
    write(tmp_path, {"rules/macros.bzl": MACROS, "pkg/BUILD": 'load("//rules:macros.bzl", "broken")\n\nbroken()\n'})
    assert load_err(tmp_path) == "rules/macros.bzl:10: fail: broken macro (called from pkg/BUILD:3)"


def test_error_while_loading_bzl(tmp_path: Path) -> None:
    write(tmp_path, {"rules/bad.bzl": 'X = 1\nY = X + "a"\n', "pkg/BUILD": 'load("//rules:bad.bzl", "Y")\n'})
    assert load_err(tmp_path).startswith("rules/bad.bzl:2: Operation `+` not supported")
    write(tmp_path, {"rules/syntax.bzl": "def f(:\n", "pkg/BUILD": 'load("//rules:syntax.bzl", "f")\n'})
    assert load_err(tmp_path).startswith("rules/syntax.bzl:1: syntax error")


def test_load_errors(tmp_path: Path) -> None:
    write(tmp_path, {"pkg/BUILD": 'py_lib(name = "a")\nload("//rules:missing.bzl", "x")\n'})
    message = load_err(tmp_path)
    assert message.startswith("pkg/BUILD:2: cannot load '//rules:missing.bzl': rules/missing.bzl does not exist")
    write(tmp_path, {"pkg/BUILD": 'load("//rules:x.py", "x")\n'})
    assert "only .bzl files can be loaded" in load_err(tmp_path)
    write(tmp_path, {"pkg/BUILD": 'load("@other//x:y.bzl", "x")\n'})
    assert "external repositories" in load_err(tmp_path)
    write(
        tmp_path,
        {"r/a.bzl": 'load("//r:b.bzl", "B")\nA = 1\n', "r/b.bzl": 'load("//r:a.bzl", "A")\nB = 1\n', "pkg/BUILD": 'load("//r:a.bzl", "A")\n'},
    )
    message = load_err(tmp_path)
    assert "load cycle: r/a.bzl -> r/b.bzl -> r/a.bzl" in message
    assert message.startswith("r/b.bzl:1: ")


def test_rule_at_bzl_top_level_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, {"r/a.bzl": 'py_lib(name = "sneaky")\n', "pkg/BUILD": 'load("//r:a.bzl", "py_lib")\n'})
    message = load_err(tmp_path)
    assert message.startswith("r/a.bzl:1: rule py_lib() can only be called while a BUILD file is evaluated")


# ---------------------------------------------------------------------------
# the target graph

GRAPH_FILES = {
    "infra/BUILD": '''\
py_lib(
    name = "python_runtime",
    visibility = ["//visibility:public"],
)
py_lib(name = "secret")
py_lib(name = "for_services", visibility = ["//services:__subpackages__"])
py_lib(name = "manual_one", tags = ["manual"])
''',
    "services/api/BUILD": '''\
python_image(
    name = "api",
    base = "python",
    deps = [":lib", "//infra:for_services"],
    runtime = "//infra:python_runtime",
)
py_lib(name = "lib", deps = ["//libs/core"])
''',
    "libs/core/BUILD": 'py_lib(name = "core", visibility = ["//services/api:__pkg__"])\n',
    "unrelated/BUILD": 'py_lib(name = "u")\n',
}


def test_graph_structure(tmp_path: Path) -> None:
    write(tmp_path, GRAPH_FILES)
    graph = load_graph(tmp_path, SCHEMAS)
    api = Label("services/api", "api")
    assert sorted(graph.targets) == [
        Label("infra", "for_services"),
        Label("infra", "manual_one"),
        Label("infra", "python_runtime"),
        Label("infra", "secret"),
        Label("libs/core", "core"),
        Label("services/api", "api"),
        Label("services/api", "lib"),
        Label("unrelated", "u"),
    ]
    assert graph.deps(api) == (Label("infra", "for_services"), Label("infra", "python_runtime"), Label("services/api", "lib"))
    assert graph.direct_rdeps(Label("libs/core", "core")) == (Label("services/api", "lib"),)
    assert graph.deps_closure([api]) == [
        Label("infra", "for_services"),
        Label("infra", "python_runtime"),
        Label("libs/core", "core"),
        Label("services/api", "api"),
        Label("services/api", "lib"),
    ]
    assert graph.deps_closure([api], depth=1) == [
        Label("infra", "for_services"),
        Label("infra", "python_runtime"),
        Label("services/api", "api"),
        Label("services/api", "lib"),
    ]
    assert graph.rdeps(graph.targets, [Label("libs/core", "core")]) == [
        Label("libs/core", "core"),
        Label("services/api", "api"),
        Label("services/api", "lib"),
    ]
    assert graph.rdeps([Label("services/api", "lib")], [Label("libs/core", "core")]) == [
        Label("libs/core", "core"),
        Label("services/api", "lib"),
    ]
    order = graph.topological_order()
    assert len(order) == len(graph.targets)
    for label in order:
        for dep in graph.deps(label):
            assert order.index(dep) < order.index(label)
    assert graph.topological_order([api]) == [
        Label("infra", "for_services"),
        Label("infra", "python_runtime"),
        Label("libs/core", "core"),
        Label("services/api", "lib"),
        api,
    ]
    assert order == load_graph(tmp_path, SCHEMAS).topological_order()  # deterministic


def test_graph_resolve(tmp_path: Path) -> None:
    write(tmp_path, GRAPH_FILES)
    graph = load_graph(tmp_path, SCHEMAS)
    assert graph.resolve("//infra:secret") == [Label("infra", "secret")]
    assert graph.resolve(":secret", "infra") == [Label("infra", "secret")]
    assert graph.resolve("//libs/core") == [Label("libs/core", "core")]
    assert graph.resolve("//infra:all") == [
        Label("infra", "for_services"),
        Label("infra", "python_runtime"),
        Label("infra", "secret"),
    ]  # manual skipped by wildcards
    assert graph.resolve("//infra:manual_one") == [Label("infra", "manual_one")]
    assert graph.resolve("//services/...") == [Label("services/api", "api"), Label("services/api", "lib")]
    assert len(graph.resolve("//...")) == 7
    with pytest.raises(ConfigError, match=r"unknown target //infra:pythn_runtime; did you mean //infra:python_runtime\?"):
        graph.resolve("//infra:pythn_runtime")
    with pytest.raises(ConfigError, match="no targets match '//nothing/...'"):
        graph.resolve("//nothing/...")
    with pytest.raises(ConfigError, match="no package //nothing"):
        graph.resolve("//nothing:all")


def test_unknown_dependency_with_suggestion(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "infra/BUILD": 'py_lib(name = "python_runtime", visibility = ["//visibility:public"])\n',
            "app/BUILD": '\n\npython_image(name = "app", base = "p", runtime = "//infra:pythn_runtime")\n',
        },
    )
    assert graph_err(tmp_path) == (
        "unknown target //infra:pythn_runtime (referenced from app/BUILD:3); did you mean //infra:python_runtime?"
    )


def test_unknown_dependency_package(tmp_path: Path) -> None:
    write(tmp_path, {"app/BUILD": 'py_lib(name = "app", deps = ["//nowhere:x"])\n'})
    assert graph_err(tmp_path) == (
        "unknown target //nowhere:x (referenced from app/BUILD:1): there is no package //nowhere "
        "(no BUILD file in nowhere/); fix the label or create nowhere/BUILD"
    )


def test_visibility_violation(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "infra/BUILD": 'py_lib(name = "secret")\n',
            "app/BUILD": 'py_lib(name = "ok")\n\npy_lib(name = "app", deps = ["//infra:secret"])\n',
        },
    )
    message = graph_err(tmp_path)
    assert message.startswith(
        "app/BUILD:3: //app:app depends on //infra:secret, which is not visible to package //app; "
        'add "//app:__pkg__" (or "//visibility:public") to the visibility of //infra:secret at infra/BUILD:1'
    )


@pytest.mark.parametrize(
    "visibility, package, visible",
    [
        (["//visibility:public"], "any/thing", True),
        (["//visibility:private"], "other", False),
        (["//visibility:private"], "dep", True),
        (["//a:__pkg__"], "a", True),
        (["//a:__pkg__"], "a/b", False),
        (["//a:__subpackages__"], "a/b/c", True),
        (["//a:__subpackages__"], "a", True),
        (["//a:__subpackages__"], "ab", False),
        (["//:__subpackages__"], "x", True),
        (["//a:__pkg__", "//b:__pkg__"], "b", True),
    ],
)
def test_is_visible(tmp_path: Path, visibility, package, visible) -> None:
    write(tmp_path, {"dep/BUILD": f'py_lib(name = "d", visibility = {visibility!r})\n'})
    target = BuildFileLoader(tmp_path, SCHEMAS).load_package("dep").targets["d"]
    assert is_visible(target, package) is visible


def test_dependency_cycle_path(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "a/BUILD": 'py_lib(name = "x", deps = [":y"], visibility = ["//visibility:public"])\n'
            'py_lib(name = "y", deps = ["//b:z"])\n',
            "b/BUILD": 'py_lib(name = "z", deps = ["//a:x"], visibility = ["//visibility:public"])\n',
        },
    )
    message = graph_err(tmp_path)
    assert message == "a/BUILD:1: dependency cycle: //a:x -> //a:y -> //b:z -> //a:x; remove one of these dependencies"


def test_self_cycle(tmp_path: Path) -> None:
    write(tmp_path, {"a/BUILD": 'py_lib(name = "t")\npy_lib(name = "x", deps = [":t", ":x"])\n'})
    assert graph_err(tmp_path) == "a/BUILD:2: dependency cycle: //a:x -> //a:x; remove one of these dependencies"


def test_load_graph_loads_only_what_patterns_need(tmp_path: Path) -> None:
    write(tmp_path, {**GRAPH_FILES, "broken/BUILD": "this is not starlark ((("})
    graph = load_graph(tmp_path, SCHEMAS, ["//services/..."])
    assert sorted(graph.packages) == ["infra", "libs/core", "services/api"]
    assert graph.resolve("//services/api:api") == [Label("services/api", "api")]
    assert graph_err(tmp_path, ["//..."]).startswith("broken/BUILD:1: syntax error")
    assert packages_for_patterns(tmp_path, ["//infra:secret", "//libs/...", "//unrelated:all"]) == [
        "infra", "libs/core", "unrelated",
    ]
    with pytest.raises(ConfigError, match="no package //nope"):
        packages_for_patterns(tmp_path, ["//nope:x"])
    with pytest.raises(ConfigError, match="no packages match '//nope/...'"):
        packages_for_patterns(tmp_path, ["//nope/..."])


def test_graph_from_packages_directly(tmp_path: Path) -> None:
    write(tmp_path, GRAPH_FILES)
    loader = BuildFileLoader(tmp_path, SCHEMAS)
    graph = TargetGraph([loader.load_package(p) for p in ("infra", "libs/core", "services/api")])
    assert Label("services/api", "api") in graph.targets
    with pytest.raises(ConfigError, match="unknown target //libs/core:core"):
        TargetGraph([loader.load_package(p) for p in ("infra", "services/api")])


def test_a_worker_forked_before_the_workspace_was_known_evaluates_like_a_fresh_one(tmp_path):
    """A build forks its BUILD-file worker first (mbuild.loading.sandbox.prefork),
    before any thread starts; the loader that takes it tells it the workspace,
    rules, .dockerignore and limits."""
    from mbuild.loading import sandbox

    root = write(tmp_path, {".dockerignore": "pkg/secret.txt\n", "pkg/BUILD": 'py_lib(name = "a", srcs = glob(["*.txt"]))\n',
                            "pkg/a.txt": "a", "pkg/secret.txt": "s"})
    sandbox.prefork()
    spare = sandbox._spare[0]
    loader = BuildFileLoader(root, SCHEMAS)
    package = loader.load_package("pkg")
    assert not sandbox._spare and loader._worker._process is spare  # the spare was used
    assert package.targets["a"].attrs["srcs"] == ("a.txt",)  # .dockerignore sent along: secret.txt is not globbed
    loader.close()
