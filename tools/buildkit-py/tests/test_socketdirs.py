"""Socket folders of processes that died are removed by the next one."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from buildkit import socketdirs


def test_a_killed_process_leaves_a_folder_the_next_one_removes():
    code = "import os, time; from buildkit import socketdirs; print(socketdirs.make('relay'), flush=True); time.sleep(60)"
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    folder = child.stdout.readline().strip()
    assert os.path.isdir(folder) and f"-{child.pid}-" in folder
    assert os.stat(folder).st_mode & 0o077 == 0
    mine = socketdirs.make("relay")
    assert os.path.isdir(folder), "a live process's folder was removed"
    child.kill()
    child.wait()
    again = socketdirs.make("relay")
    assert not os.path.exists(folder), "the dead process's folder is still there"
    assert os.path.isdir(mine) and os.path.isdir(again)  # this process's own stay
    for f in (mine, again):
        socketdirs.remove(f)


def test_other_names_are_left_alone():
    other = tempfile.mkdtemp(prefix="buildkit-relay-notapid-")
    try:
        socketdirs.remove(socketdirs.make("relay"))
        assert os.path.isdir(other)
    finally:
        os.rmdir(other)
