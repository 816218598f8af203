#!/usr/bin/env python3
"""bench/run's command line: checks the checkout, runs the chosen scenarios and
the at-scale measurements, and writes the run's folder (see bench/README.md).

    bench/run [--scenario NAME[,NAME…]] [--reps N] [--quick] [--no-profiles] [--results DIR] [--keep-tmp]
    bench/run --list
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import repo
import report
import results
import targets
from harness import Harness, log, sh
from profiles import Profiler, site_packages
from scale import QUICK_SIZES, SIZES, Workspaces
from scenarios import SCENARIOS, Context
from settings import MBUILD, MBUILD_PY, MEASURED_PACKAGES, RESULTS, ROOT, TMP_PARENT, base_env

OTHER = {"scale": "mbuild alone on synthetic workspaces of 100, 1,000 and 10,000 targets (--quick: 100 and 1,000)",
         "digest": "mbuild alone: cold and warm source digest of a 100,000-file tree"}


def usage_error(msg: str) -> int:
    print(f"bench: {msg}", file=sys.stderr)
    return 2


def venv_stamp_matches() -> bool | None:
    """Whether .venv was installed from this checkout's package files and protos (the stamp
    scripts/env-up writes, computed the same way); None when .venv has no stamp."""
    stamp = ROOT / ".venv" / ".mbuild-stamp"
    if not stamp.exists():
        return None
    files = [ROOT / "tools/buildkit-py/pyproject.toml", ROOT / "tools/mbuild/pyproject.toml",
             *sorted((ROOT / "tools/buildkit-py/src/buildkit/proto").glob("*.proto")),
             *sorted((ROOT / "tools/mbuild/mbuild/cache/remote/proto").glob("*.proto"))]
    return stamp.read_text().strip() == hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def measured_code_problem() -> str | None:
    """Why .venv's mbuild would not measure this checkout's code, or None."""
    if not MBUILD.exists():
        return f"{MBUILD} is missing: run scripts/env-up in this checkout first"
    p = subprocess.run([str(MBUILD_PY), "-c", "import mbuild, buildkit; print(mbuild.__file__); print(buildkit.__file__)"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return f"{MBUILD_PY} cannot import mbuild and buildkit: {p.stderr.strip()[-300:]}"
    for (name, tree), path in zip(MEASURED_PACKAGES.items(), p.stdout.split()):
        if not Path(path).resolve().is_relative_to(tree):
            return (f"{MBUILD_PY} imports {name} from {path}, not from this checkout's {tree.relative_to(ROOT)}: "
                    "the bench must measure this checkout's commit; run scripts/env-up in this checkout")
    if venv_stamp_matches() is False:
        return (f"{ROOT / '.venv'} was installed from other package files or .proto files than this commit's: "
                "run scripts/env-up in this checkout")
    return None


def machine_info() -> dict:
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {"uname": sh(["uname", "-a"]), "nproc": sh(["nproc"]), "memory": mem,
            "engine": sh(["docker", "version", "-f", "{{.Server.Version}}"]),
            "buildx": sh(["docker", "buildx", "version"]), "python": platform.python_version()}


def parse(argv: list[str]) -> argparse.Namespace:
    names = [s.name for s in SCENARIOS] + list(OTHER)
    ap = argparse.ArgumentParser(prog="bench/run", description="mbuild benchmarks (see bench/README.md)")
    ap.add_argument("--scenario", action="append", default=[], metavar="NAME",
                    help=f"run only these (repeatable or comma-separated): {', '.join(names)}; default: all")
    ap.add_argument("--reps", type=int, default=None, help="runs per side and measurement (default 5; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="2 reps, no 10,000-target measurements")
    ap.add_argument("--no-profiles", action="store_true", help="take no pyinstrument profiles")
    ap.add_argument("--no-server", action="store_true",
                    help="measure mbuild without its warm server (mbuild server start); by default it is started")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="folder for the run's folder and the index (default bench/results; e.g. /tmp/x for a trial)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary folder (every command's log)")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = ap.parse_args(argv)
    a.chosen = [s for o in a.scenario for s in o.split(",") if s]
    bad = [s for s in a.chosen if s not in names]
    if bad:
        ap.error(f"unknown scenario {', '.join(bad)}; choose from {', '.join(names)}")
    if a.reps is not None and a.reps < 1:
        ap.error("--reps must be at least 1")
    a.reps = a.reps or (2 if a.quick else 5)
    a.results = a.results.resolve()  # commands run in other folders write into it
    return a


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    a = parse(raw_argv)
    if a.list:
        for s in SCENARIOS:
            print(f"{s.name:14} {s.title}" + (f"  [target: {s.target}]" if s.max_ratio is not None else ""))
        for name, what in OTHER.items():
            print(f"{name:14} {what}")
        return 0
    problem = measured_code_problem()
    if problem:
        return usage_error(problem)
    dirty = repo.dirty_files()
    if dirty:
        return usage_error("refusing to run on uncommitted changes (a report states the commit it measured); "
                           "these tracked files differ from HEAD: " + ", ".join(l[3:] for l in dirty)
                           + ". Commit them, or run from a clean clone (bench/README.md).")
    chosen = a.chosen or [s.name for s in SCENARIOS] + list(OTHER)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    now = dt.datetime.now(dt.timezone.utc)
    start = repo.state()
    folder = results.new_run_folder(a.results, now.strftime("%Y-%m-%d"), start["commit"][:7])
    tmp = Path(tempfile.mkdtemp(prefix="mbuild-bench.", dir=TMP_PARENT))
    h = Harness(tmp)
    site = None if a.no_profiles else site_packages()
    profiler = Profiler(h, folder, site) if site else None
    ctx = Context(h, a.reps, profiler)
    t_start = time.perf_counter()
    data: dict = {"date": now.strftime("%Y-%m-%d"), "started": now.isoformat(timespec="seconds"), "argv": raw_argv,
                  "selected": a.chosen, "reps": a.reps, "quick": a.quick, "full": not a.chosen and not a.quick,
                  "commit": start["commit"], "subject": sh(["git", "-C", str(ROOT), "log", "-1", "--format=%s"]),
                  "machine": machine_info(), "scenarios": []}
    if profiler is None:
        data["profile_note"] = ("Profiles were not asked for (--no-profiles)." if a.no_profiles else
                                "pyinstrument is not installed in bench/.venv: no profiles.")
    log(f"run folder {folder}; temp dir {tmp}; {', '.join(chosen)}; {a.reps} reps")
    data["server"] = not a.no_server
    log("byte-compiling mbuild and its dependencies into bench/.venv/pycache (untimed)")
    subprocess.run([str(MBUILD_PY), "-m", "compileall", "-q", "-j", "0", *(str(p) for p in MEASURED_PACKAGES.values()),
                    *map(str, (ROOT / ".venv" / "lib").glob("python*/site-packages"))],
                   env=base_env(), capture_output=True)
    if data["server"]:  # untimed: mbuild's warm server, in the harness's environment (its XDG_CACHE_HOME)
        h.must([str(MBUILD), "server", "start"], name="server-start")
    try:
        for sc in SCENARIOS:
            if sc.name in chosen:
                log(f"scenario {sc.name}")
                res = sc.run(ctx)
                res.tree = repo.state()
                data["scenarios"].append(res.to_json())
        ws = Workspaces(h, a.reps, ctx.profile if profiler else None)
        if "scale" in chosen:
            data["scale"] = ws.run(QUICK_SIZES if a.quick else SIZES)
        if "digest" in chosen:
            data["digest"] = ws.digest()
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        data["interrupted"] = True
    finally:
        ctx.edits.restore()
        if ctx.warm:
            log("leaving the project images built from HEAD's sources")
            ctx.mbuild(name="final-mbuild")
        ctx.images.cleanup()
        for cleanup in ctx.cleanups.values():
            cleanup()
        if data["server"]:
            h.run([str(MBUILD), "server", "stop"], name="server-stop")
        data["tree_end"] = repo.state()
        data["profiles"] = profiler.files if profiler else {}
        data["elapsed"] = time.perf_counter() - t_start
        data["targets"] = targets.evaluate(data)
        (folder / results.RUNS).write_text(json.dumps(data, indent=1, default=str) + "\n")
        md = report.write(data, folder)
        index = results.write_index(a.results)
        log(f"wrote {md} and {index}")
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
