"""The ``mbuild`` command's entry point: a warm server if one runs (it
answers the no-op itself, from the stamp it holds), else the no-op fast path,
then the CLI in this process.

Kept free of heavy imports, so an unchanged build answers in a few tens of
milliseconds (see :mod:`mbuild.fastpath`), and a command handed to a warm
server (:mod:`mbuild.server`) pays no import at all.
"""

from __future__ import annotations

import os
import sys


def quiet_grpc() -> None:
    """gRPC's own log lines (an INFO line when a process forks while a call
    is in flight, as the BUILD file worker may during the engine's early
    start) are not the user's business: errors only, unless they ask."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


def main() -> None:
    quiet_grpc()
    argv = sys.argv[1:]
    if argv[:1] == ["server"]:
        sys.exit(server_command(argv[1:]))
    from .server import try_server

    code = try_server(argv)
    if code is not None:
        sys.exit(code)
    from .fastpath import main_fast

    if main_fast(argv):
        sys.exit(0)
    from .cli import main as cli_main

    cli_main(argv)


_SERVER_USAGE = "usage: mbuild server start|stop|status  (a warm server: see mbuild/server.py)"


def server_command(args: list[str]) -> int:
    """``mbuild server start|stop|status``."""
    from . import server

    if args == ["start"]:
        if server.running():
            print(f"mbuild: a server is already running ({server.socket_path()})", file=sys.stderr)
            return 0
        try:
            started = server.start_background()
        except (RuntimeError, OSError) as e:
            print(f"mbuild: error: mbuild server start: {e}", file=sys.stderr)
            return 1
        print(f"mbuild: server started ({started})", file=sys.stderr)
        return 0
    if args == ["stop"]:
        print("mbuild: server stopped" if server.stop() else "mbuild: no server was running", file=sys.stderr)
        return 0
    if args == ["status"]:
        up = server.running()
        print(f"mbuild: server {'running' if up else 'not running'} ({server.socket_path()})", file=sys.stderr)
        return 0 if up else 1
    print(f"mbuild: error: {_SERVER_USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    main()
