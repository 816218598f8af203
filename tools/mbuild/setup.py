"""Compiles ``mbuild/cache/remote/proto/*.proto`` (the remote cache protocols)
into Python modules at build time, with the grpcio-tools ``[build-system]``
pins; nothing generated is committed. Run ``pip install .`` (or ``-e .``)
again after editing a ``.proto`` file.

buildkit-py's setup.py does the same for its own protos: the two
distributions build apart, so neither can import the other's build code.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
PROTO_DIR = "mbuild/cache/remote/proto"


def compile_protos(src: Path, folder: str) -> None:
    import grpc_tools
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(src)) for p in (src / folder).glob("*.proto"))
    include = str(Path(grpc_tools.__file__).parent / "_proto")
    args = ["protoc", f"-I{src}", f"-I{include}", f"--python_out={src}", f"--pyi_out={src}",
            f"--grpc_python_out={src}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed for {', '.join(protos)}")


class BuildWithProtos(build_py):
    def run(self) -> None:
        compile_protos(ROOT, PROTO_DIR)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
