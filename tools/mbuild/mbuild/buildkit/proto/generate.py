"""Generate the Python modules for the ``.proto`` files of one folder.

The ``*_pb2.py`` / ``*_pb2_grpc.py`` modules are not committed: they are made
from the ``.proto`` files with ``grpcio-tools`` (pinned with ``protobuf`` in
pyproject.toml), so they always match the installed runtime. A stamp file
holds a digest of the sources and of the protobuf runtime's version;
generation reruns whenever it differs. Checking costs only a read of the
``.proto`` files, as it happens on every start.

Safe against concurrent generators: protoc writes into a private temporary
folder and each module is then moved into place with an atomic rename, so an
importer never sees half a file. Any mbuild proto package uses it::

    python -m mbuild.buildkit.proto.generate [FOLDER]   # (re)generate
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STAMP_NAME = ".generated-stamp"


def package_root(folder: Path) -> Path:
    """The folder holding the top-level ``mbuild`` package that contains *folder*."""
    folder = folder.resolve()
    for parent in folder.parents:
        if parent.name == "mbuild" and (parent / "__init__.py").exists():
            return parent.parent
    raise RuntimeError(f"{folder} is not inside the mbuild package")


def sources(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.proto"))


def source_digest(folder: Path) -> str:
    # protobuf and grpcio-tools are pinned together: the runtime's version
    # stands for both, and is cheap to read.
    from google.protobuf import __version__ as protobuf_version

    h = hashlib.sha256(protobuf_version.encode())
    for p in sources(folder):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def is_current(folder: Path) -> bool:
    try:
        return (folder / STAMP_NAME).read_text() == source_digest(folder)
    except OSError:
        return False


def generate(folder: Path) -> None:
    from grpc_tools import protoc
    import grpc_tools

    folder = folder.resolve()
    root = package_root(folder)
    include = Path(grpc_tools.__file__).parent / "_proto"
    rel_folder = folder.relative_to(root)
    rel = [str(p.relative_to(root)) for p in sources(folder)]
    tmp = Path(tempfile.mkdtemp(prefix=".protoc-", dir=folder))
    try:
        args = [
            "protoc",
            f"-I{root}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--grpc_python_out={tmp}",
            *rel,
        ]
        cwd = os.getcwd()
        try:
            os.chdir(root)
            if protoc.main(args) != 0:
                raise RuntimeError(f"protoc failed for {', '.join(rel)}")
        finally:
            os.chdir(cwd)
        for made in sorted((tmp / rel_folder).glob("*.py")):
            os.replace(made, folder / made.name)
        fd, stamp_tmp = tempfile.mkstemp(dir=folder, prefix=".stamp-")
        with os.fdopen(fd, "w") as f:
            f.write(source_digest(folder))
        os.replace(stamp_tmp, folder / STAMP_NAME)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure_generated(folder: Path = HERE) -> None:
    if not is_current(folder):
        generate(folder)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
