"""Private folders for the client's own unix sockets (a session's server, a relay).

Each is ``$TMPDIR/buildkit-<kind>-<pid>-<random>``, mode 0700 (the sockets in
it are only for this process and the daemon it dials). A process killed with
``-9`` cannot remove its folders; the next one that makes a folder removes
those of processes that are gone, so they do not pile up. Written here: the
standard library's ``tempfile`` knows nothing of owners that died.
"""

from __future__ import annotations

import os
import shutil
import tempfile


def make(kind: str) -> str:
    """A new private folder for ``kind`` ("session", "relay"), after removing
    the folders of that kind whose process is gone."""
    _remove_orphans(kind)
    return tempfile.mkdtemp(prefix=f"buildkit-{kind}-{os.getpid()}-")


def remove(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def _remove_orphans(kind: str) -> None:
    base = tempfile.gettempdir()
    prefix = f"buildkit-{kind}-"
    try:
        names = [n for n in os.listdir(base) if n.startswith(prefix)]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        path = os.path.join(base, name)
        try:
            if os.lstat(path).st_uid == os.getuid():
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's: not ours to judge
    return True
