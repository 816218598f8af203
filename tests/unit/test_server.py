"""The warm server (mbuild.server): a command it runs is the command run
in-process — same output, exit code, working directory and environment —
and it refuses to run anything once its own code has changed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mbuild.server as server_module

ENTRY = [sys.executable, "-c", "import sys; from mbuild.entry import main; sys.argv[0] = 'mbuild'; main()"]


def write_workspace(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "WORKSPACE.toml").write_text('name = "srv"\n')
    (root / "pkg" / "BUILD").write_text('filegroup(name = "files", srcs = ["a.txt"])\n'
                                        'group(name = "all", deps = [":files"])\n')
    (root / "pkg" / "a.txt").write_text("a\n")
    return root


@pytest.fixture
def env(tmp_path):
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "MBUILD_SERVER": ""}


@pytest.fixture
def server(env):
    """A server of this checkout's code, private to the test (its own XDG_CACHE_HOME)."""
    start = subprocess.run([*ENTRY, "server", "start"], env=env, capture_output=True, text=True, timeout=60)
    assert start.returncode == 0, start.stderr
    yield
    subprocess.run([*ENTRY, "server", "stop"], env=env, capture_output=True, timeout=30)


def mbuild(env, cwd, *args, server: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([*ENTRY, *args], env={**env, "MBUILD_SERVER": "" if server else "0"}, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_command_on_the_server_is_the_command_in_process(server, env, tmp_path):
    ws = write_workspace(tmp_path / "ws")
    for args in (["query", "deps(//pkg:all)"], ["query", "deps(//pkg:nope)"], ["help", "filegroup"],
                 ["query", "kind("], ["--directory", str(ws / "pkg"), "query", ":all"]):
        on, off = mbuild(env, ws, *args), mbuild(env, ws, *args, server=False)
        assert (on.returncode, on.stdout, on.stderr) == (off.returncode, off.stdout, off.stderr), args
    assert mbuild(env, ws, "query", "deps(//pkg:all)").stdout.split() == ["//pkg:all", "//pkg:files"]
    # The working directory is the client's: ":files" resolves in //pkg from there.
    assert mbuild(env, ws / "pkg", "query", ":files").stdout.strip() == "//pkg:files"


def test_the_peak_memory_of_a_served_command_is_reported_when_asked(server, env, tmp_path):
    """MBUILD_SERVER_RUSAGE: the child that ran the command (a process timer
    around the client sees only the client) — the bench's peak RSS."""
    ws = write_workspace(tmp_path / "ws")
    report = tmp_path / "rss"
    done = mbuild({**env, "MBUILD_SERVER_RUSAGE": str(report)}, ws, "query", "deps(//pkg:all)")
    assert done.returncode == 0, done.stderr
    child_kb = int(report.read_text())
    assert child_kb > 20_000  # the child holds the server's imports (gRPC, Starlark, mbuild): tens of MB
    bad = mbuild({**env, "MBUILD_SERVER_RUSAGE": str(tmp_path / "no-such-dir" / "rss")}, ws, "query", "deps(//pkg:all)")
    assert bad.returncode == 0 and "MBUILD_SERVER_RUSAGE=" in bad.stderr and len(bad.stderr.splitlines()) == 1


def test_the_clients_environment_is_the_commands(server, env, tmp_path):
    ws = write_workspace(tmp_path / "ws")
    (ws / "WORKSPACE.toml").write_text('name = "srv"\nbuildkit = "docker://"\n')
    # The command sees the client's DOCKER_CONTEXT (and no DOCKER_HOST, which would win over it).
    client_env = {k: v for k, v in env.items() if k != "DOCKER_HOST"}
    bad = mbuild({**client_env, "DOCKER_CONTEXT": "mbuild-test-no-such-context", "DOCKER_CONFIG": str(tmp_path)},
                 ws, "build", "//pkg:all")
    assert bad.returncode == 2 and "mbuild-test-no-such-context" in bad.stderr, bad.stderr


@pytest.mark.parametrize("module", ["mbuild/server.py", "mbuild/api/images.py", "buildkit/imagestore.py"])
def test_a_changed_module_is_never_served(server, env, tmp_path, module):
    """Modules the server has loaded, and those it has not (a child would
    import the new one beside the old loaded ones), alike."""
    import buildkit

    ws = write_workspace(tmp_path / "ws")
    package, rel = module.split("/", 1)
    top = Path(server_module.__file__).parent if package == "mbuild" else Path(buildkit.__file__).parent
    module = top / rel
    before = module.stat()
    os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        proc = mbuild(env, ws, "query", "//pkg:files")
        assert proc.returncode == 0 and proc.stdout.strip() == "//pkg:files"  # run in-process instead
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and mbuild(env, ws, "server", "status").returncode == 0:
            time.sleep(0.1)
        assert mbuild(env, ws, "server", "status").returncode == 1, "an out-of-date server kept running"
    finally:
        os.utime(module, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_ctrl_c_reaches_the_command(server, env, tmp_path):
    """The child runs the command; a signal to the client is forwarded to it."""
    ws = write_workspace(tmp_path / "ws")
    # A rule module that never finishes loading: any command reading the rules hangs.
    (ws / "rules").mkdir()
    (ws / "rules" / "slow.py").write_text("n = 0\nwhile True:\n    n += 1\n")
    (ws / "WORKSPACE.toml").write_text('name = "srv"\nrules = ["rules/slow.py"]\n')
    proc = subprocess.Popen([*ENTRY, "query", "//pkg:files"], env=env, cwd=ws, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    # The loop runs in the server's child, not in the client: the client only waits.
    utime = int(Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[11])
    assert utime < 0.5 * os.sysconf("SC_CLK_TCK"), "the command ran in the client, not on the server"
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, proc.stderr.read()
    assert "interrupted" in proc.stderr.read()


def test_server_usage_and_status(env, tmp_path):
    assert mbuild(env, tmp_path, "server", "status").returncode == 1
    bad = mbuild(env, tmp_path, "server", "frobnicate")
    assert bad.returncode == 2 and "usage: mbuild server start|stop|status" in bad.stderr
    assert "no server was running" in mbuild(env, tmp_path, "server", "stop").stderr


def test_two_messages_sent_at_once_are_read_as_two():
    """A no-op answered by the server ends before the client has read the
    child's pid: both messages arrive in one read, and neither may be lost
    (it was: the command then exited 1 after printing its answer)."""
    import socket

    ours, theirs = socket.socketpair()
    with ours, theirs:
        server_module._send(theirs, {"pid": 12})
        server_module._send(theirs, {"exit": 0, "maxrss_kb": 1})
        assert server_module._recv(ours)[0] == {"pid": 12}
        assert server_module._recv(ours)[0] == {"exit": 0, "maxrss_kb": 1}
    # And a request with its descriptors, followed at once by more bytes.
    ours, theirs = socket.socketpair()
    with ours, theirs:
        server_module._send(theirs, {"argv": ["build"]}, [0, 1, 2])
        server_module._send(theirs, {"v": 1})
        request, fds = server_module._recv(ours, with_fds=True)
        for fd in fds:
            os.close(fd)
        assert (request, len(fds)) == ({"argv": ["build"]}, 3)
        assert server_module._recv(ours)[0] == {"v": 1}
