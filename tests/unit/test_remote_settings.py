"""The remote cache limits of WORKSPACE.toml's [cache] table
(remote_timeout, remote_min_rate): parsed, checked with a one-line error at
the file's line, and handed to the remote client a build opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from mbuild.errors import ConfigError
from mbuild.loading.workspace import parse_workspace


def cache(body: str, tmp_path: Path):
    return parse_workspace(f'name = "w"\n[cache]\nremote = "http://127.0.0.1:1/"\n{body}\n', tmp_path).cache


def test_limits_are_read(tmp_path):
    c = cache('remote_timeout = 2.5\nremote_min_rate = "500KiB"', tmp_path)
    assert (c.remote_timeout, c.remote_min_rate) == (2.5, 500 << 10)
    c = cache("remote_timeout = 30", tmp_path)
    assert (c.remote_timeout, c.remote_min_rate) == (30, None)  # None: the client's default


@pytest.mark.parametrize("line, message", [
    ("remote_timeout = 0", "cache.remote_timeout must be a number of seconds above 0 and at most 3600"),
    ("remote_timeout = -1", "above 0"),
    ("remote_timeout = 7200", "at most 3600"),
    ("remote_timeout = true", "above 0"),
    ('remote_timeout = "10s"', "'cache.remote_timeout' must be a number of seconds, got a string"),
    ('remote_min_rate = "fast"', 'cache.remote_min_rate must be a size per second above 0 like "1MiB"'),
    ('remote_min_rate = "0KB"', "above 0"),
    ("remote_min_rate = 1000", "'cache.remote_min_rate' must be a size per second"),
])
def test_bad_limits_name_the_line(tmp_path, line, message):
    with pytest.raises(ConfigError) as e:
        cache(line, tmp_path)
    text = str(e.value)
    assert text.startswith("WORKSPACE.toml:4:") and message in text and "\n" not in text, text


def test_a_build_holds_its_remote_to_them(tmp_path):
    from mbuild.cache.store import LocalStore
    from mbuild.workflow import open_remote

    ws = parse_workspace('name = "w"\n[cache]\nremote = "grpc://127.0.0.1:1"\nremote_timeout = 3\n'
                         'remote_min_rate = "2MiB"\n', tmp_path)
    actions = open_remote(ws, LocalStore(tmp_path / "store"), None, None)
    try:
        assert actions.remote.remote.limits.deadline(4 << 20).seconds == 3 + 2
    finally:
        actions.remote.close()
    default = open_remote(parse_workspace('name = "w"\n[cache]\nremote = "grpc://127.0.0.1:1"\n', tmp_path),
                          LocalStore(tmp_path / "store"), None, None)
    assert default.remote.remote.limits.timeout == 10  # the client's default
    default.remote.close()
