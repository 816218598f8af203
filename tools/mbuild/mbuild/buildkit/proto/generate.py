"""Generate the Python modules for mbuild's own ``.proto`` files.

The ``*_pb2.py`` / ``*_pb2_grpc.py`` modules are not committed: they are made
from the ``.proto`` files beside this module with ``grpcio-tools`` (pinned with
``protobuf`` in pyproject.toml), so they always match the installed runtime.
A stamp file holds a digest of the sources and the generator version;
generation reruns whenever it differs.

    python -m mbuild.buildkit.proto.generate            # (re)generate
    python -m mbuild.buildkit.proto.generate --check-or-build
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent.parent.parent  # the folder holding the `mbuild` package
STAMP = HERE / ".generated-stamp"


def sources() -> list[Path]:
    return sorted(HERE.glob("*.proto"))


def source_digest() -> str:
    import grpc_tools

    h = hashlib.sha256(getattr(grpc_tools, "__version__", "").encode())
    try:
        from importlib.metadata import version

        h.update(version("grpcio-tools").encode())
    except Exception:  # pragma: no cover - metadata missing in odd installs
        pass
    for p in sources():
        h.update(p.name.encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def is_current() -> bool:
    try:
        return STAMP.read_text() == source_digest()
    except OSError:
        return False


def generate() -> None:
    from grpc_tools import protoc
    import grpc_tools

    include = Path(grpc_tools.__file__).parent / "_proto"
    rel = [str(p.relative_to(PACKAGE_ROOT)) for p in sources()]
    args = [
        "protoc",
        f"-I{PACKAGE_ROOT}",
        f"-I{include}",
        f"--python_out={PACKAGE_ROOT}",
        f"--grpc_python_out={PACKAGE_ROOT}",
        *rel,
    ]
    cwd = os.getcwd()
    try:
        os.chdir(PACKAGE_ROOT)
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed for {', '.join(rel)}")
    finally:
        os.chdir(cwd)
    # Atomic stamp write: a concurrent generator never sees half a stamp.
    fd, tmp = tempfile.mkstemp(dir=HERE)
    with os.fdopen(fd, "w") as f:
        f.write(source_digest())
    os.replace(tmp, STAMP)


def ensure_generated() -> None:
    if not is_current():
        generate()


if __name__ == "__main__":
    if "--check-or-build" in sys.argv[1:]:
        ensure_generated()
    else:
        generate()
