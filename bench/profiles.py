"""pyinstrument profiles of mbuild commands, kept in the run's folder as ``profile-<name>.txt``.

pyinstrument comes from bench/.venv (bench/run installs it); it runs inside
mbuild's own interpreter (``.venv/bin/python -m pyinstrument … -m mbuild``),
with bench/.venv's site-packages on the PYTHONPATH. Profiles are separate,
untimed runs: the timed runs never carry the profiler.
"""

from __future__ import annotations

from pathlib import Path

from harness import Harness, log
from settings import BENCH_VENV, MBUILD_PY

INTERVAL = "0.0005"  # seconds between samples


def site_packages() -> Path | None:
    """bench/.venv's site-packages, if pyinstrument is installed there."""
    for p in sorted((BENCH_VENV / "lib").glob("python*/site-packages")):
        if (p / "pyinstrument").exists():
            return p
    return None


class Profiler:
    def __init__(self, h: Harness, out_dir: Path, site: Path) -> None:
        self.h = h
        self.out_dir = out_dir
        self.site = site
        self.files: dict[str, str] = {}  # profile name -> file name in out_dir

    def profile(self, name: str, args: list[str], cwd: Path, env: dict | None = None, module: str = "mbuild") -> None:
        """pyinstrument over ``python -m MODULE ARGS``.

        ``mbuild`` is the command itself (its no-op fast path first);
        ``mbuild.cli`` is the full CLI, the path any change takes.
        """
        out = self.out_dir / f"profile-{name}.txt"
        cmd = [str(MBUILD_PY), "-m", "pyinstrument", "--interval", INTERVAL, "-r", "text",
               "-o", str(out), "-m", module, *args]
        r = self.h.run(cmd, cwd=cwd, env=dict(env or {}, PYTHONPATH=str(self.site)), name=f"profile-{name}")
        if out.exists():
            header = (f"# pyinstrument: python -m {module} {' '.join(args)}\n# cwd: {cwd}\n"
                      f"# wall {r.wall:.2f}s, rc {r.rc}\n")
            out.write_text(header + out.read_text())
            self.files[name] = out.name
            log(f"  profile {name}: {out.name}")
