"""Entry point: ``python -m api`` (PORT env overrides the default 8000)."""

import signal
import sys

from api.server import make_server


def main() -> None:
    server = make_server()
    # As PID 1 in a container SIGTERM has no default action: handle it so
    # `docker stop` shuts down promptly instead of waiting for SIGKILL.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"api listening on :{server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
