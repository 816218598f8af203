"""Compiles ``src/buildkit/proto/*.proto`` into Python modules at build time.

The generated ``*_pb2.py`` / ``*_pb2_grpc.py`` are not committed; every
wheel (and every editable install) is built with them, by the grpcio-tools
that ``[build-system]`` pins, so they always match the protobuf runtime the
package depends on. Run ``pip install .`` (or ``-e .``) again after editing
a ``.proto`` file.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SRC = Path(__file__).resolve().parent / "src"
PROTO_DIR = "buildkit/proto"  # imported as "buildkit/proto/x.proto"; generates buildkit.proto.x_pb2


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
        compile_protos(SRC, PROTO_DIR)
        super().run()


setup(cmdclass={"build_py": BuildWithProtos})
