"""mbuild.atomicfile: readers see the old content or the new, never half;
a failed write leaves nothing behind."""

from __future__ import annotations

import os

import pytest

from mbuild.atomicfile import write_bytes, writing


def test_a_file_is_private_unless_asked_and_umasked_like_open(tmp_path):
    write_bytes(tmp_path / "private", b"x")
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o600
    old = os.umask(0o027)
    try:
        with writing(tmp_path / "sub" / "made", umasked=True, suffix=".part") as f:
            f.write(b"y")
        assert os.umask(0o027) == 0o027  # the process's umask was never changed
    finally:
        os.umask(old)
    assert (tmp_path / "sub" / "made").read_bytes() == b"y"
    assert (tmp_path / "sub" / "made").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["made"]


@pytest.mark.parametrize("umasked", [False, True])
def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path, umasked):
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with writing(target, umasked=umasked, suffix=".part") as f:
            f.write(b"half")
            raise RuntimeError("engine went away")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
