"""An optional warm server: the CLI with its imports already done, forked afresh for every command.

A command that has to build spends about 0.2 s importing gRPC, protobuf,
Starlark and mbuild itself before its first solve; a warm server (as Bazel,
Buck2 and pantsd have) removes that. ``mbuild server start`` starts one per
user and installation; while it runs, ``mbuild …`` hands the command to it::

    mbuild server start        # in the background; logs in ~/.cache/mbuild-server/, socket in /tmp/mbuild-server-<uid>/
    mbuild server status
    mbuild server stop         # also stops by itself after 3 idle hours

**It never serves a stale answer.** For each command it forks a child that
takes the client's own stdin, stdout and stderr (passed over the unix
socket), working directory, environment, umask and arguments, and runs
exactly what ``mbuild`` would run in-process, the no-op fast path first; the
child's exit code is the command's. The parent opens no BuildKit connection
and reads no workspace; the one thing it keeps between commands is each
command's no-op stamp, decoded and watched with inotify
(:mod:`mbuild.warm_stamps`, which says why that is exact), so the child
looks again only at the files that may have changed, not at every file of
the workspace. Before each fork it checks that none of the code it imported
(every loaded module file, mbuild's and buildkit-py's included) has changed
since it started; if any has, it refuses the command (the client then runs it
in-process) and exits, so the next ``mbuild server start`` loads the new code.

The client (:func:`try_server`, the first thing :mod:`mbuild.entry` does)
imports only ``socket``, ``marshal`` and ``signal``; when no server answers
it returns at once and the command runs in-process, so the server is only
ever a speed-up. ``MBUILD_SERVER=0`` ignores a running server;
``MBUILD_WATCH=0`` (in the server's environment) keeps no stamps;
``MBUILD_SERVER_RUSAGE=FILE`` writes the peak RSS of the child that ran the
command to FILE (a timer around the client sees only the client).
Ctrl-C and SIGTERM are forwarded to the child.

Written on the standard library (``socket.send_fds``, ``os.fork``) because
no maintained library does fork-per-request with passed descriptors.
"""

from __future__ import annotations

import marshal
import os
import socket
import sys

IDLE_LIMIT = 3 * 3600.0  # seconds without a command before the server exits
_PROTOCOL = 1


def server_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mbuild-server")


def socket_dir() -> str:
    """A short folder for the socket (unix socket paths are limited to 107
    bytes), private to the user: ``$XDG_RUNTIME_DIR``, else ``/tmp/mbuild-server-<uid>``."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "mbuild-server") if runtime else f"/tmp/mbuild-server-{os.getuid()}"


def _private_dir(path: str) -> bool:
    """Whether ``path`` is a folder of this user's that nobody else can enter (made if absent)."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_uid == os.getuid() and (st.st_mode & 0o077) == 0 and not os.path.islink(path)


def socket_path() -> str:
    """One server per user, Python, mbuild installation and cache folder
    (never another checkout's code, never another cache's settings)."""
    try:
        from _sha256 import sha256
    except ImportError:  # pragma: no cover - other Pythons
        from hashlib import sha256
    here = os.path.dirname(os.path.abspath(__file__))
    tag = sha256(f"{_PROTOCOL}\0{sys.executable}\0{sys.version}\0{here}\0{server_dir()}".encode()).hexdigest()
    return os.path.join(socket_dir(), f"{tag[:24]}.sock")


# --------------------------------------------------------------------------- wire
# A message is 4 bytes of length, then a marshal'd value. The client's request
# carries its three standard descriptors as SCM_RIGHTS.


def _send(sock: socket.socket, value, fds: list[int] | None = None) -> None:
    data = marshal.dumps(value)
    payload = len(data).to_bytes(4, "big") + data
    if fds:
        socket.send_fds(sock, [payload], fds)
    else:
        sock.sendall(payload)


def _recv(sock: socket.socket, with_fds: bool = False):
    """One message (and the descriptors sent with it): exactly its bytes, never
    a byte of the next one (a fast command's answer follows its pid at once)."""
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(sock, 4, 3)  # the descriptors come with the first byte
    else:
        head = sock.recv(4)
    head += _exactly(sock, 4 - len(head)) if head else b""
    if len(head) < 4:
        raise EOFError("connection closed")
    return marshal.loads(_exactly(sock, int.from_bytes(head, "big"))), fds


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(min(size - len(data), 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        data += chunk
    return data


# --------------------------------------------------------------------------- client


def try_server(argv: list[str]) -> int | None:
    """Run the command on a warm server; its exit code, or None to run it here."""
    if os.environ.get("MBUILD_SERVER") == "0":
        return None
    path = socket_path()
    if not os.path.exists(path) or not _private_dir(os.path.dirname(path)):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(2.0)
        sock.connect(path)
        umask = os.umask(0)
        os.umask(umask)
        request = {"v": _PROTOCOL, "argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                   "umask": umask}
        _send(sock, request, [0, 1, 2])
        answer, _ = _recv(sock)
    except (OSError, EOFError, ValueError):
        sock.close()
        return None
    if not isinstance(answer, dict) or "pid" not in answer:
        sock.close()
        return None  # refused (the server's code is out of date, and it exits): run in-process
    import signal

    pid = answer["pid"]

    def forward(signum, frame):
        try:
            os.kill(pid, signum)
        except OSError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    sock.settimeout(None)
    try:
        done, _ = _recv(sock)
    except (OSError, EOFError, ValueError):
        return 1  # the server went away mid-command
    finally:
        sock.close()
    if not isinstance(done, dict):
        return 1
    _report_usage(done.get("maxrss_kb"))
    return int(done.get("exit", 1))


def _report_usage(maxrss_kb) -> None:
    """``MBUILD_SERVER_RUSAGE=FILE``: write the command's peak RSS (KiB, of the
    server's child that ran it) to FILE, for benchmarks: a process timer
    around ``mbuild`` measures only this thin client."""
    path = os.environ.get("MBUILD_SERVER_RUSAGE")
    if not path or not isinstance(maxrss_kb, int):
        return
    try:
        with open(path, "w") as f:
            f.write(f"{maxrss_kb}\n")
    except OSError as e:
        print(f"mbuild: warning: MBUILD_SERVER_RUSAGE={path}: {e.strerror or e}", file=sys.stderr)


# --------------------------------------------------------------------------- server


def _preload() -> None:
    """Import everything a command may need, so a forked child starts warm."""
    import buildkit.client  # noqa: F401 - grpc and the protos
    import buildkit.gateway  # noqa: F401
    import buildkit.proto.control_pb2  # noqa: F401
    import starlark  # noqa: F401

    from . import cli, workflow  # noqa: F401
    from .analysis import analyze  # noqa: F401
    from .cache import keys, store  # noqa: F401
    from .cache.remote import open_safe_remote  # noqa: F401
    from .execution import bases, build, remote  # noqa: F401
    from .ui import progress  # noqa: F401


def _code_facts() -> dict[str, tuple[int, int] | None]:
    """Every file of the code a command may run: each module loaded now, and
    every module and proto of mbuild and buildkit-py whether loaded yet or not
    (a child that imports a changed one beside stale loaded ones would run a
    mix of old and new code). None for a file that is absent."""
    from .fastpath import tool_files

    paths = {getattr(m, "__file__", None) for m in list(sys.modules.values())} | set(tool_files())
    out: dict[str, tuple[int, int] | None] = {}
    for path in paths:
        if path:
            try:
                st = os.stat(path)
            except OSError:
                out[path] = None
                continue
            out[path] = (st.st_mtime_ns, st.st_size)
    return out


def _changed(facts: dict[str, tuple[int, int] | None]) -> str | None:
    """A file that changed, appeared or went away since the server started; or None."""
    from .fastpath import tool_files

    if set(tool_files()) - set(facts):
        return "a new module"
    for path, fact in facts.items():
        try:
            st = os.stat(path)
        except OSError:
            if fact is not None:
                return path
            continue
        if (st.st_mtime_ns, st.st_size) != fact:
            return path
    return None


def _child(conn: socket.socket, listener: socket.socket, request: dict, fds: list[int]) -> None:
    """In the forked child: become the client's process and run the CLI."""
    import gc
    import signal

    gc.freeze()  # what the server holds is never garbage here: no collection need scan it (or copy its pages)
    gc.enable()  # (a server thread may have paused it while reading a stamp)
    listener.close()
    conn.close()
    for target, fd in enumerate(fds[:3]):
        os.dup2(fd, target)
    # Nothing else of the server's: not the client sockets of other commands
    # (a waiting client must see its own child end, not another's).
    os.closerange(3, os.sysconf("SC_OPEN_MAX") if os.sysconf("SC_OPEN_MAX") < 1 << 16 else 1 << 16)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.umask(request["umask"])
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdin = os.fdopen(0, "r", closefd=False)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", closefd=False)
    sys.argv = ["mbuild", *request["argv"]]
    code = 0
    try:
        from .fastpath import main_fast

        if not main_fast(list(request["argv"])):
            from .cli import main

            main(list(request["argv"]))
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - the CLI reports its own errors; this is a last resort
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except OSError:
                pass
    os._exit(code)


def _wait_and_answer(conn: socket.socket, pid: int, stamps, stamp: str | None) -> None:
    _, status, usage = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    watched = stamps is not None and stamp is not None
    if watched:
        stamps.expect(stamp)  # before the answer: a command sent right after it waits for the stamp
    try:
        _send(conn, {"exit": code if code >= 0 else 128 - code, "maxrss_kb": usage.ru_maxrss})
    except OSError:
        pass
    finally:
        conn.close()
        if watched:
            stamps.refresh(stamp)  # the command may have written it anew


def _stamp_of(request: dict) -> str | None:
    """Where the no-op stamp of the request's command is, if it may have one."""
    from . import fastpath

    try:
        argv = [str(a) for a in request["argv"]]
        return fastpath.stamp_path(argv, str(request["cwd"]), dict(request["env"])) \
            if fastpath.eligible(argv) else None
    except (KeyError, TypeError, ValueError):
        return None  # not a request the CLI could run either: the child says so


def serve(path: str | None = None, idle_limit: float = IDLE_LIMIT) -> None:
    """Serve until idle for ``idle_limit`` seconds, stopped, or out of date."""
    import threading
    import time

    path = path or socket_path()
    if not _private_dir(os.path.dirname(path)):
        raise SystemExit(f"mbuild server: {os.path.dirname(path)} is not a private folder of this user")
    from .entry import quiet_grpc

    quiet_grpc()  # before gRPC is imported: it reads the setting once
    _preload()
    from . import fastpath
    from .warm_stamps import WarmStamps

    stamps = WarmStamps.open()
    facts = _code_facts()
    tmp = f"{path}.{os.getpid()}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(64)
    os.replace(tmp, path)  # a new server takes over the name atomically
    st = os.stat(path)
    mine = (st.st_dev, st.st_ino)
    listener.settimeout(5.0)
    last = time.monotonic()
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                if time.monotonic() - last > idle_limit or not _owns(path, mine):
                    return  # idle, or another server took over the name
                if stamps is not None:
                    stamps.drain()  # keep the event queue short (an overflow drops every stamp)
                continue
            last = time.monotonic()
            conn.settimeout(5.0)
            try:
                request, fds = _recv(conn, with_fds=True)
            except (OSError, EOFError, ValueError):
                conn.close()
                continue
            if not isinstance(request, dict) or request.get("v") != _PROTOCOL or len(fds) != 3:
                conn.close()
                for fd in fds:
                    os.close(fd)
                continue
            if request.get("argv") == ["server", "stop"]:
                _send(conn, {"stopped": True})
                conn.close()
                return
            stale = _changed(facts)
            if stale is not None:
                _send(conn, {"stale": stale})  # the client runs it in-process
                conn.close()
                for fd in fds:
                    os.close(fd)
                return
            stamp = _stamp_of(request) if stamps is not None else None
            held = stamps.snapshot(stamp) if stamp is not None else None
            fastpath.warm = {stamp: held} if held is not None else {}
            pid = os.fork()
            if pid == 0:
                try:
                    _child(conn, listener, request, fds)  # (ends the process itself)
                except BaseException as e:  # noqa: BLE001 - never back into the server's loop
                    try:
                        os.write(2, f"mbuild: error: {e}\n".encode())
                    finally:
                        os._exit(1)
            fastpath.warm = {}
            for fd in fds:
                os.close(fd)
            conn.settimeout(None)
            try:
                _send(conn, {"pid": pid})
            except OSError:  # the client gave up waiting (and runs the command itself): not twice
                import signal

                os.kill(pid, signal.SIGTERM)
                conn.close()
                threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
                continue
            threading.Thread(target=_wait_and_answer, args=(conn, pid, stamps, stamp), daemon=True).start()
    finally:
        listener.close()
        if stamps is not None:
            stamps.close()
        if _owns(path, mine):
            try:
                os.unlink(path)
            except OSError:
                pass


def _owns(path: str, mine: tuple[int, int]) -> bool:
    """Whether the socket file at ``path`` is still this server's."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == mine


# --------------------------------------------------------------------------- control


def running() -> bool:
    path = socket_path()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(2.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def start_background() -> str:
    """Start a server detached from this terminal; returns its socket path."""
    import subprocess
    import time

    path = socket_path()
    os.makedirs(server_dir(), mode=0o700, exist_ok=True)
    if not _private_dir(os.path.dirname(path)):
        raise RuntimeError(f"{os.path.dirname(path)} is not a private folder of this user; remove it, or set "
                           "XDG_RUNTIME_DIR to a folder of yours")
    log_path = os.path.join(server_dir(), os.path.basename(path)[:-5] + ".log")
    with open(log_path, "ab") as log:
        subprocess.Popen([sys.executable, "-m", "mbuild.server", "--serve"], stdin=subprocess.DEVNULL, stdout=log,
                         stderr=log, start_new_session=True, close_fds=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if running():
            return path
        time.sleep(0.05)
    raise RuntimeError(f"the server did not start within 30 s; see {log_path}")


def stop() -> bool:
    """Ask a running server to stop; False if none was running."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(5.0)
        sock.connect(socket_path())
        _send(sock, {"v": _PROTOCOL, "argv": ["server", "stop"], "cwd": "/", "env": {}, "umask": 0o22},
              [0, 1, 2])
        _recv(sock)
        return True
    except (OSError, EOFError, ValueError):
        return False
    finally:
        sock.close()


if __name__ == "__main__" and sys.argv[1:] == ["--serve"]:
    serve()
