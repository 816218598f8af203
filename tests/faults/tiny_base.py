"""A base image of a few MiB for fault tests that build many times: the
host's ``sh``, ``chmod`` and ``sleep`` and the libraries they link, brought
into the engine with ``docker import`` (as the environment makes its stand-in
bases). Exporting an image on the usual base sends its 70 MB layer to the
client on every solve that keeps blobs; on this one a cycle of the kill
test is about a second."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from pathlib import Path

PROGRAMS = ("sh", "chmod", "sleep")


def _linked(binary: str) -> list[str]:
    """The shared objects ``binary`` loads (ldd), as absolute paths."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    return [m.group(1) for m in re.finditer(r"(/\S+) \(0x", out)]


def rootfs() -> bytes:
    """A tar of the programs at /bin (and /usr/bin), their libraries at their paths."""
    files: dict[str, str] = {}
    for name in PROGRAMS:
        real = os.path.realpath(f"/bin/{name}")
        files[f"bin/{name}"] = real
        for lib in _linked(real):
            files.setdefault(lib.lstrip("/"), os.path.realpath(lib))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        made = set()
        for rel in sorted(files):
            parts = Path(rel).parts
            for i in range(1, len(parts)):
                folder = "/".join(parts[:i])
                if folder not in made:
                    made.add(folder)
                    info = tarfile.TarInfo(folder)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            data = Path(files[rel]).read_bytes()
            info = tarfile.TarInfo(rel)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        for folder in ("tmp", "etc"):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
    return buf.getvalue()


def import_tiny_base(name: str) -> None:
    """``docker import`` the tiny root file system as ``name`` (on DOCKER_HOST's engine)."""
    subprocess.run(["docker", "import", "-", name], input=rootfs(), capture_output=True, check=True)
