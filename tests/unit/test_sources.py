"""What a target may read from the workspace (issue 12, defects 1-3 and a
directory in srcs, from defect 6): only files a build gets, the ones
BuildKit's file sender sends. Before: ``..`` in filegroup srcs copied another
package's file around its visibility, or hashed /etc/passwd into the key; a
path through a symlinked folder was hashed from outside the workspace and
left out of the image; an explicit ``.env`` was silently dropped; files
.dockerignore excludes were read, hashed and recorded in the key (and so
uploaded with it); a directory gave "internal error: IsADirectoryError"."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from mbuild.api.testing import RuleHarness
from mbuild.cache import digests
from mbuild.cache.keys import canonical
from mbuild.errors import ConfigError
from mbuild.loading.sources import IgnoreFile, SourceChecker, SourceError

SECRET = "TOKEN=hunter2-do-not-leak\n"
WORKSPACE = 'name = "srcs"\n'


def harness(root: Path, files: dict[str, str]) -> RuleHarness:
    return RuleHarness.write(root, {"WORKSPACE.toml": WORKSPACE, "other/README.md": "other\n",
                                    "other/BUILD": "", **files})


def error_of(root: Path, files: dict[str, str], label: str = "//probe:f") -> str:
    with pytest.raises(ConfigError) as info:
        harness(root, files).analyze(label)
    message = str(info.value)
    assert "\n" not in message and info.value.exit_code == 2, message
    return message


@pytest.mark.parametrize("src", ["../other/README.md", "../../../../etc/passwd", "/etc/passwd", "a/../b.txt",
                                 "./b.txt", "a//b.txt"])
def test_filegroup_srcs_stay_in_their_package(tmp_path, src):
    message = error_of(tmp_path, {"probe/BUILD": f'filegroup(name = "f", srcs = ["{src}"])\n', "probe/b.txt": "b"})
    assert message.startswith(f"probe/BUILD:1: //probe:f: srcs: {src!r} is not a path inside package //probe"), \
        message
    assert "filegroup label in deps" in message


def test_a_path_through_a_symlinked_folder_is_an_error(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("from outside\n")
    ws = tmp_path / "ws"
    files = {"probe/BUILD": 'filegroup(name = "f", srcs = ["linkdir/f"])\n'}
    harness(ws, files)
    os.symlink(outside, ws / "probe" / "linkdir")
    message = error_of(ws, files)
    assert message == (f"probe/BUILD:1: //probe:f: source file probe/linkdir/f is under probe/linkdir, a symlink "
                       f"to {outside}; a build gets the link, not what it points to: name the files where they "
                       f"are, inside the workspace"), message


def test_an_explicit_dockerignored_file_is_an_error_naming_the_pattern(tmp_path):
    message = error_of(tmp_path, {
        ".dockerignore": "# secrets\n**/.env\n",
        "probe/.env": SECRET,
        "probe/BUILD": 'filegroup(name = "f", srcs = [".env"])\n',
    })
    assert message.startswith("probe/BUILD:1: //probe:f: source file probe/.env is excluded by .dockerignore:2 "
                              "(**/.env), so a build never gets it; remove it from the target's srcs"), message


def test_a_directory_in_srcs_is_an_error(tmp_path):
    ws = tmp_path
    files = {"probe/BUILD": 'filegroup(name = "f", srcs = ["dir"])\n', "probe/dir/x.txt": "x"}
    message = error_of(ws, files)
    assert message == ('probe/BUILD:1: //probe:f: source file probe/dir is a directory; name its files, e.g. '
                       'glob(["dir/**"])'), message


def test_excluded_files_are_never_read_hashed_or_recorded(tmp_path, monkeypatch):
    read: list[str] = []
    real = digests.hash_file
    monkeypatch.setattr(digests, "hash_file", lambda path: read.append(os.fspath(path)) or real(path))
    analysis = harness(tmp_path, {
        ".dockerignore": ".env\n**/.env\n**/*.pem\nprobe/private/\n!probe/private/public.txt\n",
        ".env": SECRET,
        "probe/.env": SECRET,
        "probe/key.pem": SECRET,
        "probe/private/id.txt": SECRET,
        "probe/private/public.txt": "shared\n",
        "probe/a.txt": "a\n",
        "probe/BUILD": 'filegroup(name = "f", srcs = glob(["**"]))\n',
        "BUILD": 'filegroup(name = "root", srcs = glob(["*"], exclude = ["BUILD", "WORKSPACE.toml"]))\n',
    }).analyze("//probe:f", "//:root")
    doc = analysis["//probe:f"].key_inputs
    assert sorted(doc["sources"]) == ["probe/BUILD", "probe/a.txt", "probe/private/public.txt"]
    assert analysis["//:root"].info.files == (".dockerignore",)
    assert not any(p.endswith((".env", ".pem", "id.txt")) for p in read), read
    secret_hash = hashlib.sha256(SECRET.encode()).hexdigest()
    for result in analysis.values():
        assert secret_hash not in canonical(result.key_inputs).decode()


def test_an_invalid_dockerignore_pattern_is_an_error_at_its_line(tmp_path):
    harness(tmp_path, {".dockerignore": "ok\n\n[z-a\n", "probe/BUILD": 'filegroup(name = "f", srcs = ["x"])\n'})
    with pytest.raises(ConfigError, match=r"^\.dockerignore:3: syntax error in pattern '\[z-a'.*; fix the "
                                          r"pattern"):
        IgnoreFile.load(tmp_path)


def test_checker_names_the_reason(tmp_path):
    (tmp_path / "f").write_text("x")
    checker = SourceChecker(tmp_path)
    with pytest.raises(SourceError, match=r"^source file f/g is under f, which is a file, not a folder$"):
        checker.check_path("f/g")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(SourceError, match="is not a regular file"):
        checker.check("pipe", os.lstat(tmp_path / "pipe").st_mode)
