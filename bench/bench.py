#!/usr/bin/env python3
"""mbuild benchmarks: side by side with ``docker buildx bake``, and at scale.

Run through ``bench/run`` (which makes bench/.venv first); see bench/README.md.
Writes ``bench/results/<date>.md`` (+ ``.json``), ``<date>-sidebyside.png``
and the profiles ``<date>-profile-*.txt``.

Timing: every figure is one whole process (``time.perf_counter`` around
``subprocess.run``), so interpreter start-up and engine round trips count.
Side-by-side runs alternate bake, mbuild, bake, mbuild… so drift of the
shared machine hits both sides alike. Peak RSS (scale runs) comes from
``/usr/bin/time -f %M`` when present, else from ``getrusage(RUSAGE_CHILDREN)``
in a one-shot wrapper process.

Nothing here prunes the engine's build cache: "cold" is ``--no-cache`` on
both sides. The engine is shared; the only images touched are the bake tags
``mbuild-bench-bake-*`` (removed at the end) and the project's own
``ai-mono-python:latest`` / ``ai-mono-node:latest`` (rebuilt at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MBUILD = ROOT / ".venv" / "bin" / "mbuild"
MBUILD_PY = ROOT / ".venv" / "bin" / "python"
RESULTS = BENCH / "results"
REAPI = "grpc://127.0.0.1:50051"
REGISTRY = "127.0.0.1:5000"
CACHE_REPO = "mbuild-bench/cache"
BAKE_TAGS = ["mbuild-bench-bake-python:latest", "mbuild-bench-bake-node:latest"]
PROJECT_TAGS = ["ai-mono-python:latest", "ai-mono-node:latest"]
BASES = ["python:3.11", "python:3.11-slim", "node:22-slim"]
# Byte-code caching as on a developer's machine: this environment may set
# PYTHONDONTWRITEBYTECODE=1, which makes every mbuild run recompile all of its
# modules (~0.1 s more per run). The cache goes to bench/.venv/pycache, not
# into the source tree.
PYCACHE = BENCH / ".venv" / "pycache"
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
BASE_ENV["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
RUN_TIMEOUT = 900  # one build; a hang (seen: exit blocked on session threads) is a failed run

SIDE_BY_SIDE = ["cold", "noop", "api", "pycore", "lock", "web", "remote", "remote-shared", "affected"]
OTHER = ["scale", "digest", "profile"]
ALL = SIDE_BY_SIDE + OTHER

TITLES = {
    "cold": "1. cold (`--no-cache` both; fresh mbuild cache dir)",
    "noop": "2. no-op (nothing changed)",
    "api": "3. one line in apps/api (Python app source)",
    "pycore": "4. one line in libs/py-core",
    "lock": "5. comment line in poetry.lock",
    "web": "6. one line in apps/web (Node app source)",
    "remote": "7. remote hit, fresh engine (REAPI vs registry cache)",
    "remote-shared": "7b. remote hit on the shared engine (images removed)",
    "affected": "8. CI: `--affected --since HEAD~1 //...` vs bake all",
}
INCREMENTAL = ["api", "pycore", "lock", "web", "affected"]
EDITS = {  # scenario -> (file, comment prefix)
    "api": ("apps/api/api/server.py", "#"),
    "pycore": ("libs/py-core/py_core/__init__.py", "#"),
    "lock": ("poetry.lock", "#"),
    "web": ("apps/web/src/main.ts", "//"),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- running

@dataclass
class Run:
    wall: float
    rc: int
    rss_kb: int | None = None
    log: str = ""
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0

    def to_json(self) -> dict:
        return {"wall": round(self.wall, 4), "rc": self.rc, "rss_kb": self.rss_kb, "note": self.note}


class Harness:
    def __init__(self, tmp: Path, reps: int) -> None:
        self.tmp = tmp
        self.reps = reps
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nlog = 0
        self.time_bin = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
        self.seen_images: set[str] = set()

    def run(self, cmd: list[str], cwd: Path = ROOT, env: dict | None = None, name: str = "run",
            rss: bool = False, timeout: float = RUN_TIMEOUT, quiet_stdout: bool = True) -> Run:
        """Run ``cmd`` once, timed as a whole process; output goes to a log file."""
        self.nlog += 1
        logf = self.logs / f"{self.nlog:04d}-{name}.log"
        full_env = dict(BASE_ENV, **(env or {}))
        rss_file = None
        argv = list(cmd)
        if rss:
            rss_file = self.logs / f"{self.nlog:04d}-{name}.rss"
            if self.time_bin:
                argv = [self.time_bin, "-f", "%M", "-o", str(rss_file), *argv]
            else:
                argv = [sys.executable, "-c", _RSS_WRAPPER, str(rss_file), *argv]
        with open(logf, "wb") as out:
            out.write(("$ " + " ".join(cmd) + f"\n# cwd {cwd}\n").encode())
            out.flush()
            # A blocking wait (no `timeout=`: subprocess then polls waitpid with
            # sleeps of up to 50 ms, which quantises short runs); a timer thread
            # kills the process group instead.
            expired = threading.Event()
            t0 = time.perf_counter()
            p = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            timer = threading.Timer(timeout, _kill_group, (p, expired))
            timer.daemon = True
            timer.start()
            try:
                rc = p.wait()
            except BaseException:
                _kill_group(p, expired)
                p.wait()
                raise
            finally:
                timer.cancel()
            wall = time.perf_counter() - t0
            note = f"timed out after {timeout:.0f}s" if expired.is_set() else ""
            if expired.is_set():
                rc = 124
        peak = None
        if rss_file is not None and rss_file.exists():
            try:
                peak = int(rss_file.read_text().strip().splitlines()[-1])
            except (ValueError, IndexError):
                peak = None
        r = Run(wall, rc, peak, str(logf), note)
        if not r.ok:
            log(f"  FAILED ({rc}{', ' + note if note else ''}): {' '.join(cmd)}; log {logf}")
            r.note = (note + "; " if note else "") + tail(logf, 3)
        return r

    def must(self, cmd: list[str], cwd: Path = ROOT, env: dict | None = None, name: str = "setup",
             timeout: float = RUN_TIMEOUT) -> Run:
        r = self.run(cmd, cwd, env, name, timeout=timeout)
        if not r.ok:
            raise RuntimeError(f"setup step failed: {' '.join(cmd)}\n{tail(Path(r.log), 15)}")
        return r

    # ---- image bookkeeping: remember every image id our runs produced
    def note_images(self, tags: list[str], docker_host: str | None = None) -> None:
        if docker_host:
            return  # private engines vanish whole
        for tag in tags:
            p = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
            if p.returncode == 0:
                self.seen_images.add(p.stdout.strip())


def _kill_group(p: subprocess.Popen, expired: threading.Event) -> None:
    expired.set()
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def tail(path: Path, n: int) -> str:
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


def sh(cmd: list[str], **kw) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout.strip()


# --------------------------------------------------------------------------- the two tools

def bake_cmd(*extra: str, bake_file: Path | None = None) -> list[str]:
    cmd = ["docker", "buildx", "bake", "--progress", "plain"]
    if bake_file:
        cmd += ["-f", str(bake_file)]
    return cmd + list(extra)


def cache_from() -> list[str]:
    return [a for t in ("python", "node") for a in
            ("--set", f"{t}.cache-from=type=registry,ref={REGISTRY}/{CACHE_REPO}:{t}")]


def cache_to() -> list[str]:
    return [a for t in ("python", "node") for a in
            ("--set", f"{t}.cache-to=type=registry,ref={REGISTRY}/{CACHE_REPO}:{t},mode=max")]


def mbuild_cmd(cache_dir: Path, *args: str) -> list[str]:
    return [str(MBUILD), "--cache-dir", str(cache_dir), *args]


def mbuild_build(cache_dir: Path, *extra: str, label: str = "//infra:compose") -> list[str]:
    return mbuild_cmd(cache_dir, "build", "--progress", "plain", *extra, label)


# --------------------------------------------------------------------------- a private engine

class PrivateEngine:
    """A throwaway containerd + dockerd pair with their own state (a fresh CI runner).

    Only for scenario ``remote``: the shared engine's build cache cannot be
    emptied (other people use it), so a "fresh machine" is emulated by an
    engine of the same build (Docker 26, containerd image store) with empty
    content store, snapshots and BuildKit cache. The base images are loaded
    into it before the timed run (a runner would have pulled them; neither
    tool can pull here). Deleted whole afterwards; its images never touch the
    shared engine.
    """

    def __init__(self, parent: Path) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="eng.", dir=parent))
        self.sock = self.dir / "docker.sock"
        self.procs: list[subprocess.Popen] = []
        # Its own bridge. Never `--bridge=none`: a dockerd started with it
        # deletes the host's docker0, breaking the shared engine's networking.
        self.bridge = f"mbench{os.getpid() % 10000}{int(time.time() * 1000) % 100}"[:15]

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def start(self) -> None:
        d = self.dir
        (d / "containerd.toml").write_text(
            f'version = 2\nroot = "{d}/ctd-root"\nstate = "{d}/ctd-state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{d}/containerd.sock"\n[ttrpc]\n  address = "{d}/containerd.sock.ttrpc"\n')
        (d / "daemon.json").write_text('{"features":{"containerd-snapshotter":true}}\n')
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True)
        self.procs.append(subprocess.Popen(["containerd", "--config", str(d / "containerd.toml")],
                                           stdout=open(d / "containerd.log", "wb"), stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, start_new_session=True))
        _wait(lambda: (d / "containerd.sock").exists(), 30, "private containerd")
        self.procs.append(subprocess.Popen(
            ["dockerd", "--config-file", str(d / "daemon.json"), f"--containerd={d}/containerd.sock",
             "--data-root", str(d / "root"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
             "-H", self.host, "--bridge", self.bridge, "--iptables=false", "--ip6tables=false", "--ip-masq=false"],
            stdout=open(d / "dockerd.log", "wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True))
        _wait(lambda: subprocess.run(["docker", "-H", self.host, "version"], capture_output=True).returncode == 0,
              60, "private dockerd")

    def load(self, tarball: Path) -> None:
        p = subprocess.run(["docker", "-H", self.host, "load", "-q", "-i", str(tarball)], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(f"loading base images into the private engine: {p.stderr[-500:]}")

    def has(self, tag: str) -> bool:
        return subprocess.run(["docker", "-H", self.host, "image", "inspect", tag], capture_output=True).returncode == 0

    def stop(self) -> None:
        for p in reversed(self.procs):  # dockerd first, then containerd
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        # Anything still mounted below our directory (shims, snapshots) goes first.
        mounts = [l.split()[1] for l in Path("/proc/self/mounts").read_text().splitlines()
                  if len(l.split()) > 1 and l.split()[1].startswith(str(self.dir))]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        check_docker0()


def check_docker0() -> None:
    """The shared engine's bridge must still be there (see PrivateEngine)."""
    if subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode != 0:
        raise SystemExit("bench: docker0 is gone: the shared engine's containers have no network; stopping")


def _wait(pred, limit: float, what: str) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {limit:.0f}s")


def on_private_engine(eng: PrivateEngine, cmd: list[str]) -> list[str]:
    """``cmd`` in a private mount namespace where /var/run/docker.sock is ``eng``'s.

    mbuild reaches the engine at the default socket in two places (BuildKit
    over docker://, and the engine API for bases and image loads), so the
    socket itself is swapped; the namespace is private, nobody else sees it.
    """
    q = " ".join(_shq(a) for a in cmd)
    return ["unshare", "-m", "--propagation", "private", "--", "sh", "-c",
            f"mount --bind {_shq(str(eng.sock))} /var/run/docker.sock && exec {q}"]


def _shq(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------- edits

class Edits:
    """Appends unique comment lines to tracked files; restores them at the end."""

    def __init__(self) -> None:
        self.saved: dict[Path, bytes] = {}
        self.n = 0

    def check_clean(self, rel: list[str]) -> None:
        dirty = sh(["git", "-C", str(ROOT), "status", "--porcelain", "--", *rel])
        if dirty:
            raise RuntimeError(f"refusing to edit files with local changes:\n{dirty}")

    def append(self, rel: str, prefix: str, tag: str) -> None:
        path = ROOT / rel
        if path not in self.saved:
            self.saved[path] = path.read_bytes()
        self.n += 1
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            data += b"\n"
        path.write_bytes(data + f"{prefix} bench {tag} {os.getpid()}-{time.time_ns()}-{self.n}\n".encode())

    def restore(self) -> None:
        for path, data in self.saved.items():
            path.write_bytes(data)
            subprocess.run(["git", "-C", str(ROOT), "checkout", "--", str(path.relative_to(ROOT))],
                           capture_output=True)
        self.saved.clear()


# --------------------------------------------------------------------------- scenarios

def code_state() -> str:
    """HEAD, plus a hash of uncommitted changes under tools/mbuild (the code being measured)."""
    head = sh(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    diff = subprocess.run(["git", "-C", str(ROOT), "diff", "HEAD", "--", "tools/mbuild"], capture_output=True).stdout
    if not diff:
        return head
    import hashlib
    return f"{head}+dirty:{hashlib.sha256(diff).hexdigest()[:8]}"


@dataclass
class Scenario:
    name: str
    bake: list[Run] = field(default_factory=list)
    mbuild: list[Run] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    code: str = field(default_factory=code_state)  # at the start of the scenario

    def to_json(self) -> dict:
        return {"name": self.name, "title": TITLES.get(self.name, self.name), "notes": self.notes,
                "code": self.code, "code_end": code_state(),
                "bake": [r.to_json() for r in self.bake], "mbuild": [r.to_json() for r in self.mbuild]}


class SideBySide:
    def __init__(self, h: Harness, reps: int) -> None:
        self.h = h
        self.reps = reps
        self.cache = h.tmp / "mbuild-cache"  # mbuild's warm local cache for the whole run
        self.edits = Edits()
        self.warm = False
        self.populated = False

    def fresh_cache(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="cache.", dir=self.h.tmp))

    def bake(self, *extra: str, name: str = "bake", env: dict | None = None, cwd: Path = BENCH,
             bake_file: Path | None = None) -> Run:
        r = self.h.run(bake_cmd(*extra, bake_file=bake_file), cwd=cwd, env=env, name=name)
        self.h.note_images(BAKE_TAGS, (env or {}).get("DOCKER_HOST"))
        return r

    def mbuild(self, *extra: str, cache: Path | None = None, name: str = "mbuild", cwd: Path = ROOT,
               label: str = "//infra:compose") -> Run:
        r = self.h.run(mbuild_build(cache or self.cache, *extra, label=label), cwd=cwd, name=name)
        self.h.note_images(PROJECT_TAGS)
        return r

    def warm_up(self) -> None:
        if not self.warm:
            log("warming both sides (untimed)")
            self.bake(name="warm-bake")
            self.mbuild(name="warm-mbuild")
            self.warm = True

    def alternate(self, sc: Scenario, bake_once, mbuild_once) -> None:
        for i in range(self.reps):
            log(f"  {sc.name} rep {i + 1}/{self.reps}: bake")
            sc.bake.append(bake_once(i))
            log(f"  {sc.name} rep {i + 1}/{self.reps}: mbuild ({sc.bake[-1].wall:.2f}s bake)")
            sc.mbuild.append(mbuild_once(i))
            log(f"  {sc.name} rep {i + 1}/{self.reps}: {sc.mbuild[-1].wall:.2f}s mbuild")

    # 1
    def cold(self) -> Scenario:
        sc = Scenario("cold")
        sc.notes.append("bake `--no-cache`; mbuild `build --no-cache` with a new empty `--cache-dir` each run. "
                        "Both download from PyPI and npm. BuildKit cache *mounts* (pip, Poetry and pnpm "
                        "download caches, same ids on both sides) survive `--no-cache`, so downloads are "
                        "partly served from them on both sides; the engine's cache is never pruned.")
        self.alternate(sc, lambda i: self.bake("--no-cache", name="cold-bake"),
                       lambda i: self.mbuild("--no-cache", cache=self.fresh_cache(), name="cold-mbuild"))
        self.warm = False  # the no-cache runs replaced the loaded images
        return sc

    # 2
    def noop(self) -> Scenario:
        sc = Scenario("noop")
        self.warm_up()
        sc.notes.append("One untimed build of each first; nothing changes between runs.")
        self.alternate(sc, lambda i: self.bake(name="noop-bake"), lambda i: self.mbuild(name="noop-mbuild"))
        return sc

    # 3-6
    def edit(self, name: str) -> Scenario:
        rel, prefix = EDITS[name]
        sc = Scenario(name)
        self.edits.check_clean([rel])
        self.warm_up()
        sc.notes.append(f"Before every run (either side) a new unique line `{prefix} bench …` is appended to "
                        f"`{rel}`, so each run sees a change since its own last build; restored afterwards.")
        try:
            def b(i):
                self.edits.append(rel, prefix, name)
                return self.bake(name=f"{name}-bake")

            def m(i):
                self.edits.append(rel, prefix, name)
                return self.mbuild(name=f"{name}-mbuild")
            self.alternate(sc, b, m)
        finally:
            self.edits.restore()
        return sc

    # 7
    def populate_remotes(self) -> None:
        if self.populated:
            return
        self.populated = True
        log("populating the registry cache (bake cache-to, mode=max) and the REAPI cache (--remote-upload)")
        self.h.must(bake_cmd(*cache_to()), cwd=BENCH, name="populate-registry")
        self.h.must(mbuild_build(self.fresh_cache(), "--remote", REAPI, "--remote-upload"), name="populate-reapi")

    def remote(self) -> Scenario:
        sc = Scenario("remote")
        self.warm_up()
        self.populate_remotes()
        bases = self.h.tmp / "bases.tar"
        if not bases.exists():
            subprocess.run(["docker", "save", "-o", str(bases), *BASES], check=True)
        sc.notes.append(
            "Both sides on a **fresh private engine** per run: its own containerd (empty content store and "
            "snapshots) and dockerd 26 with an empty BuildKit cache, base images loaded first (untimed). "
            f"bake: `--set *.cache-from=type=registry,ref={REGISTRY}/{CACHE_REPO}:<target>` (populated once "
            "with `cache-to …,mode=max`). mbuild: empty `--cache-dir`, `--remote " + REAPI + "` (populated "
            "once with `--remote-upload`); its /var/run/docker.sock is the private engine's (bind mount in a "
            "private mount namespace). Both load the images into that engine. Limits: engine start-up and base "
            "loading are not timed; registry and REAPI server are local (no network latency); the registry "
            "and BuildGrid are different servers, so server speed is part of the comparison.")

        def once(side: str) -> Run:
            eng = PrivateEngine(self.h.tmp)
            try:
                eng.start()
                eng.load(bases)
                if side == "bake":
                    r = self.bake(*cache_from(), name="remote-bake", env={"DOCKER_HOST": eng.host})
                    tags = BAKE_TAGS
                else:
                    r = self.h.run(on_private_engine(eng, mbuild_build(self.fresh_cache(), "--remote", REAPI)),
                                   name="remote-mbuild")
                    tags = PROJECT_TAGS
                missing = [t for t in tags if not eng.has(t)]
                if r.ok and missing:
                    r.rc, r.note = 99, f"exit 0 but {missing} not in the engine"
                return r
            finally:
                eng.stop()
        self.alternate(sc, lambda i: once("bake"), lambda i: once("mbuild"))
        return sc

    def remote_shared(self) -> Scenario:
        sc = Scenario("remote-shared")
        self.warm_up()
        self.populate_remotes()
        sc.notes.append(
            "As the brief words it, on the shared engine. mbuild: `docker rmi ai-mono-python:latest "
            "ai-mono-node:latest`, empty `--cache-dir`, `--remote " + REAPI + "`. bake: `docker rmi` of its two "
            "tags, then `cache-from` the registry cache. Limit: the shared engine's BuildKit cache is warm and may "
            "not be pruned, so bake (and mbuild, if it solved) gets local cache hits: bake's figure is a lower "
            "bound of a real registry-cache rebuild; scenario 7 is the fair one.")

        def b(i):
            subprocess.run(["docker", "rmi", *BAKE_TAGS], capture_output=True)
            return self.bake(*cache_from(), name="rshared-bake")

        def m(i):
            subprocess.run(["docker", "rmi", *PROJECT_TAGS], capture_output=True)
            r = self.mbuild("--remote", REAPI, cache=self.fresh_cache(), name="rshared-mbuild")
            log_text = Path(r.log).read_text(errors="replace")
            if r.ok and "(cached)" not in log_text:
                r.note = "not answered from the remote"
            return r
        self.alternate(sc, b, m)
        return sc

    # 8
    def affected(self) -> Scenario:
        sc = Scenario("affected")
        self.warm_up()
        wt = self.h.tmp / "worktree"
        self.h.must(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(wt), "HEAD"], name="worktree")
        git = ["git", "-C", str(wt), "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        counter = [0]

        def commit() -> None:
            counter[0] += 1
            f = wt / EDITS["api"][0]
            # unique across runs, or BuildKit answers from an earlier run's cache
            f.write_text(f.read_text() + f"# bench affected {os.getpid()}-{time.time_ns()}-{counter[0]}\n")
            subprocess.run([*git, "commit", "-q", "--no-verify", "-am", f"bench {counter[0]}"], check=True)

        env = {"CONTEXT": str(wt)}
        bake_file = BENCH / "docker-bake.hcl"
        sc.notes.append(
            "In a `git worktree add --detach` of HEAD (removed afterwards; no ref of the repository moves). "
            "Before every run a commit appending a line to apps/api/api/server.py is made there; mbuild: "
            "`build --affected --since HEAD~1 //...` (warm cache); bake: both targets (it has no affected "
            "analysis), context = the worktree.")
        try:
            commit()
            self.h.must(bake_cmd(bake_file=bake_file), cwd=wt, env=env, name="aff-warm-bake")
            self.h.must(mbuild_cmd(self.cache, "build", "--progress", "plain", "--affected", "--since", "HEAD~1",
                                   "//..."), cwd=wt, name="aff-warm-mbuild")

            def b(i):
                commit()
                return self.bake(name="aff-bake", env=env, cwd=wt, bake_file=bake_file)

            def m(i):
                commit()
                r = self.h.run(mbuild_cmd(self.cache, "build", "--progress", "plain", "--affected", "--since",
                                          "HEAD~1", "//..."), cwd=wt, name="aff-mbuild")
                self.h.note_images(PROJECT_TAGS)
                return r
            self.alternate(sc, b, m)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], capture_output=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "prune"], capture_output=True)
        return sc


# --------------------------------------------------------------------------- scale

def scale(h: Harness, sizes: list[int], reps: int, profile_sizes: list[int], prof: "Profiler | None") -> dict:
    out: dict = {"sizes": {}}
    for n in sizes + [s for s in profile_sizes if s not in sizes]:
        measure = n in sizes
        ws = h.tmp / f"ws{n}"
        log(f"scale: generating {n} targets")
        p = subprocess.run([sys.executable, str(BENCH / "genworkspace.py"), str(n), "--out", str(ws)],
                           capture_output=True, text=True, check=True)
        meta = json.loads((ws / "BENCH_META.json").read_text())
        cache = h.tmp / f"ws{n}-cache"
        res: dict = {"meta": meta, "rows": {}}
        cmds = {
            "load": ("loading: `query 'deps(//...)'`", mbuild_cmd(cache, "query", "deps(//...)")),
            "analysis": ("loading + analysis: `affected --since HEAD //...` (clean tree)",
                         mbuild_cmd(cache, "affected", "--since", "HEAD", "//...")),
            "rdeps": ("`query 'rdeps(//..., //pkg0:t0)'`", mbuild_cmd(cache, "query", "rdeps(//..., //pkg0:t0)")),
            "affected": ("`affected --since HEAD` (pkg0/src/a.txt changed)",
                         mbuild_cmd(cache, "affected", "--since", "HEAD")),
            "explain": ("`explain //top:all` (load + analysis + keys of every filegroup)",
                        mbuild_cmd(cache, "explain", "//top:all")),
        }
        if measure:
            for key, (title, cmd) in cmds.items():
                if key == "affected":
                    (ws / "pkg0/src/a.txt").write_text("changed\n")
                runs = [h.run(cmd, cwd=ws, name=f"s{n}-{key}", rss=True) for _ in range(reps)]
                if key == "affected":
                    subprocess.run(["git", "-C", str(ws), "checkout", "--", "pkg0/src/a.txt"], check=True)
                res["rows"][key] = {"title": title, "runs": [r.to_json() for r in runs]}
                log(f"  {n} {key}: {summ(runs)}")
        log(f"scale: first build of //top:images ({meta['top_images']} images) at {n}")
        tries = []
        for _ in range(3):  # failures seen are random (gRPC metadata soft limit) or a hang at exit
            tries.append(h.run(mbuild_cmd(cache, "build", "--progress", "plain", "//top:images"), cwd=ws,
                               name=f"s{n}-first", rss=True, timeout=300))
            if tries[-1].ok:
                break
        first = tries[-1]
        res["first_build"] = {**first.to_json(), "tries": len(tries),
                              "failures": [t.to_json() for t in tries if not t.ok]}
        if measure and first.ok:
            for key, label, title in (("noop50", "//top:images", f"no-op build of `//top:images` ({meta['top_images']} cached images)"),
                                      ("noopall", "//top:all", "no-op build of `//top:all` (the images + every filegroup: whole-graph analysis and keys)")):
                runs = [h.run(mbuild_cmd(cache, "build", "--progress", "plain", label), cwd=ws, name=f"s{n}-{key}",
                              rss=True, timeout=600) for _ in range(reps)]
                res["rows"][key] = {"title": title, "runs": [r.to_json() for r in runs]}
                log(f"  {n} {key}: {summ(runs)}")
            probe = h.run(mbuild_cmd(cache, "build", "--progress", "plain", meta["biggest_image"]), cwd=ws,
                          name=f"s{n}-probe", timeout=600)
            res["probe"] = {"label": meta["biggest_image"], "files": meta["biggest_image_files"], **probe.to_json()}
            out["sizes"][str(n)] = res
        elif measure:
            out["sizes"][str(n)] = res
        if prof is not None and n in profile_sizes:
            prof.profile(f"{n // 1000}k-load", mbuild_cmd(cache, "query", "deps(//...)")[1:], ws)
            prof.profile(f"{n // 1000}k-analysis", mbuild_cmd(cache, "affected", "--since", "HEAD", "//...")[1:], ws)
            if first.ok:
                prof.profile(f"{n // 1000}k-noop", mbuild_cmd(cache, "build", "--progress", "plain", "//top:all")[1:], ws)
        shutil.rmtree(ws, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    return out


def digest(h: Harness, reps: int, files: int, prof: "Profiler | None") -> dict:
    ws = h.tmp / "tree"
    log(f"digest: generating {files} files")
    subprocess.run([sys.executable, str(BENCH / "genworkspace.py"), "--tree", str(files), "--out", str(ws)],
                   capture_output=True, check=True)
    cold, warm = [], []
    warm_cache = h.tmp / "tree-cache"
    for i in range(reps):
        c = Path(tempfile.mkdtemp(prefix="cache.", dir=h.tmp))
        cold.append(h.run(mbuild_cmd(c, "explain", "//:tree"), cwd=ws, name="digest-cold", rss=True))
        shutil.rmtree(c, ignore_errors=True)
    h.run(mbuild_cmd(warm_cache, "explain", "//:tree"), cwd=ws, name="digest-fill")
    for i in range(reps):
        warm.append(h.run(mbuild_cmd(warm_cache, "explain", "//:tree"), cwd=ws, name="digest-warm", rss=True))
    log(f"  digest cold {summ(cold)}; warm {summ(warm)}")
    if prof is not None:
        prof.profile("100k-digest-warm", mbuild_cmd(warm_cache, "explain", "//:tree")[1:], ws)
    shutil.rmtree(ws, ignore_errors=True)
    return {"files": files, "cold": [r.to_json() for r in cold], "warm": [r.to_json() for r in warm]}


# --------------------------------------------------------------------------- profiles

class Profiler:
    def __init__(self, h: Harness, date: str) -> None:
        self.h = h
        self.date = date
        self.files: dict[str, str] = {}
        site = _bench_site_packages()
        self.env = None
        if site and (site / "pyinstrument").exists():
            self.env = {"PYTHONPATH": str(site)}

    @property
    def available(self) -> bool:
        return self.env is not None

    def profile(self, name: str, args: list[str], cwd: Path, module: str = "mbuild") -> None:
        """pyinstrument over ``python -m MODULE ARGS`` (mbuild from .venv, pyinstrument from bench/.venv).

        ``mbuild`` is the command itself (its no-op fast path first); ``mbuild.cli``
        is the full CLI, the path any change takes.
        """
        if not self.available:
            return
        out = RESULTS / f"{self.date}-profile-{name}.txt"
        cmd = [str(MBUILD_PY), "-m", "pyinstrument", "--interval", "0.0005", "-r", "text",
               "-o", str(out), "-m", module, *args]
        r = self.h.run(cmd, cwd=cwd, env=self.env, name=f"profile-{name}")
        if r.ok or out.exists():
            header = f"# pyinstrument: python -m {module} {' '.join(args)}\n# cwd: {cwd}\n# wall {r.wall:.2f}s, rc {r.rc}\n"
            out.write_text(header + out.read_text())
            self.files[name] = out.name
            log(f"  profile {name}: {out.name}")


def _bench_site_packages() -> Path | None:
    for p in sorted((BENCH / ".venv" / "lib").glob("python*/site-packages")):
        return p
    return None


# --------------------------------------------------------------------------- report

def stats(runs: list[dict]) -> dict | None:
    ok = [r["wall"] for r in runs if r["rc"] == 0]
    if not ok:
        return None
    return {"median": statistics.median(ok), "min": min(ok), "max": max(ok), "n": len(ok),
            "failed": len(runs) - len(ok)}


def summ(runs: list[Run]) -> str:
    s = stats([r.to_json() for r in runs])
    if not s:
        return "all failed"
    rss = [r.rss_kb for r in runs if r.rss_kb]
    return f"median {s['median']:.2f}s ({s['min']:.2f}–{s['max']:.2f})" + (f", peak {max(rss) / 1024:.0f} MB" if rss else "")


def fmt_s(s: dict | None) -> str:
    if s is None:
        return "failed"
    f = f"{s['median']:.2f} ({s['min']:.2f}–{s['max']:.2f})"
    return f + (f" **{s['failed']} failed**" if s["failed"] else "")


def pairwise_ratio(sc: dict) -> float | None:
    rs = [m["wall"] / b["wall"] for b, m in zip(sc["bake"], sc["mbuild"]) if b["rc"] == 0 and m["rc"] == 0]
    return statistics.median(rs) if rs else None


def machine_info() -> dict:
    def first(cmd):
        try:
            return sh(cmd)
        except OSError:
            return "?"
    mem = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    dirty = first(["git", "-C", str(ROOT), "status", "--porcelain"])
    return {
        "uname": first(["uname", "-a"]), "nproc": first(["nproc"]), "memory": mem,
        "engine": first(["docker", "version", "-f", "{{.Server.Version}}"]),
        "buildx": first(["docker", "buildx", "version"]), "commit": first(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        "dirty": len(dirty.splitlines()) if dirty else 0, "python": platform.python_version(),
        "code": code_state(),
    }


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("**PASS**" if ok else "**MISS**")


def write_report(data: dict, md: Path, png_name: str | None) -> None:
    m = data["machine"]
    sbs = {s["name"]: s for s in data["scenarios"]}
    L: list[str] = []
    L.append(f"# mbuild benchmarks, {data['date']}\n")
    L.append(f"`bench/run {' '.join(data['argv'])}`".rstrip() + f" — {data['reps']} reps per side, "
             f"{'quick mode (no 10k scale measurements)' if data['quick'] else 'full'}; "
             f"took {data['elapsed'] / 60:.1f} min.\n")
    L.append("| machine | |\n|---|---|")
    L.append(f"| uname -a | `{m['uname']}` |")
    L.append(f"| nproc / memory | {m['nproc']} / {m['memory']} |")
    L.append(f"| engine (`docker version`) | {m['engine']} |")
    L.append(f"| buildx | `{m['buildx']}` |")
    L.append(f"| commit | `{m['commit']}`" + (f" (+{m['dirty']} uncommitted paths in the work tree)" if m["dirty"] else "") + " |")
    L.append(f"| python (mbuild) | {m['python']} |\n")
    L.append("Every figure is the wall-clock time of a whole process (seconds): median (min–max) "
             "over the successful runs. Side by side, runs alternate bake, mbuild, bake, mbuild…; "
             "the ratio is mbuild / bake of the medians (pairwise: the median of per-pair ratios). "
             "bake builds `bench/docker-bake.hcl` (both seed Dockerfiles, target `runtime`, loaded into "
             "the engine); mbuild builds `//infra:compose` (both images, loaded, plus the compose file). "
             "The engine's build cache is shared with other users and never pruned: cold is `--no-cache` "
             "on both sides. mbuild runs with byte-code caching on (`PYTHONDONTWRITEBYTECODE` removed from the "
             "environment, `PYTHONPYCACHEPREFIX=bench/.venv/pycache`), as on a developer's machine.\n")
    targets: list[tuple[str, bool | None, str]] = []
    if sbs:
        L.append("## Side by side with `docker buildx bake`\n")
        if png_name:
            L.append(f"![side by side]({png_name})\n")
        L.append("| scenario | bake s | mbuild s | ratio (medians) | ratio (pairwise) | mbuild code |")
        L.append("|---|---|---|---|---|---|")
        for name in SIDE_BY_SIDE:
            if name not in sbs:
                continue
            sc = sbs[name]
            b, mb = stats(sc["bake"]), stats(sc["mbuild"])
            ratio = mb["median"] / b["median"] if b and mb else None
            pr = pairwise_ratio(sc)
            L.append(f"| {TITLES[name]} | {fmt_s(b)} | {fmt_s(mb)} | "
                     f"{'%.2f' % ratio if ratio is not None else '—'} | {'%.2f' % pr if pr is not None else '—'} | "
                     + (f"`{sc.get('code', '?')}`" if sc.get("code") == sc.get("code_end")
                        else f"**changed during the runs**: `{sc.get('code', '?')}` → `{sc.get('code_end', '?')}`") + " |")
            sc["_ratio"] = ratio
        L.append("")
        for name in SIDE_BY_SIDE:
            if name in sbs and sbs[name]["notes"]:
                L.append(f"- **{TITLES[name]}**: " + " ".join(sbs[name]["notes"]))
        fails = [(n, side, r) for n in SIDE_BY_SIDE if n in sbs for side in ("bake", "mbuild")
                 for r in sbs[n][side] if r["rc"] != 0 or r["note"]]
        if fails:
            L.append("\nFailed or flagged runs:\n")
            for n, side, r in fails:
                L.append(f"- {n} / {side}: rc {r['rc']} after {r['wall']:.1f}s: `{r['note'][:300]}`")
        L.append("")
        if "noop" in sbs:
            b, mb = stats(sbs["noop"]["bake"]), stats(sbs["noop"]["mbuild"])
            targets.append(("no-op of //infra:compose ≤ 0.3 s", mb["median"] <= 0.3 if mb else False,
                            f"{mb['median']:.3f} s" if mb else "failed"))
            targets.append(("no-op ≥ 10× faster than bake's no-op", (b["median"] / mb["median"] >= 10) if b and mb else False,
                            f"{b['median'] / mb['median']:.1f}×" if b and mb else "failed"))
        for name in INCREMENTAL:
            if name in sbs:
                r = sbs[name].get("_ratio")
                targets.append((f"incremental ratio ≤ 1.0: {TITLES[name]}", (r <= 1.0) if r is not None else False,
                                f"{r:.2f}" if r is not None else "failed"))
        if "cold" in sbs:
            r = sbs["cold"].get("_ratio")
            targets.append(("cold ratio ≤ 1.05", (r <= 1.05) if r is not None else False, f"{r:.2f}" if r is not None else "failed"))
        if "remote" in sbs:
            r = sbs["remote"].get("_ratio")
            targets.append(("remote hit faster than bake's registry-cache rebuild (fresh engine)",
                            (r < 1.0) if r is not None else False, f"ratio {r:.2f}" if r is not None else "failed"))
    sc_data = data.get("scale")
    if sc_data:
        L.append("## At scale (synthetic workspaces, `bench/genworkspace.py`)\n")
        sizes = list(sc_data["sizes"])
        if sizes:
            meta_line = "; ".join(f"{n}: {sc_data['sizes'][n]['meta']['packages']} packages, "
                                  f"{sc_data['sizes'][n]['meta']['images']} images, "
                                  f"{sc_data['sizes'][n]['meta']['filegroups']} filegroups, "
                                  f"{sc_data['sizes'][n]['meta']['edges']} edges" for n in sizes)
            L.append(f"Workspaces: {meta_line}. Time: median (min–max) s; peak RSS: the largest of the runs.\n")
            L.append("| measurement | " + " | ".join(f"{int(n):,} targets: s | peak MB" for n in sizes) + " |")
            L.append("|---|" + "---|---|" * len(sizes))
            keys = list(sc_data["sizes"][sizes[0]]["rows"])
            for key in keys:
                cells = []
                for n in sizes:
                    row = sc_data["sizes"][n]["rows"].get(key)
                    s = stats(row["runs"]) if row else None
                    rss = [r["rss_kb"] for r in row["runs"] if r["rss_kb"]] if row else []
                    cells.append(fmt_s(s) if row else "—")
                    cells.append(f"{max(rss) / 1024:.0f}" if rss else "—")
                L.append(f"| {sc_data['sizes'][sizes[0]]['rows'][key]['title']} | " + " | ".join(cells) + " |")
            fbs = []
            for n in sizes:
                f = sc_data["sizes"][n]["first_build"]
                fbs.append(f"{n}: {f['wall']:.1f}s, rc {f['rc']}, {f.get('tries', 1)} tries"
                           + "".join(f"; failed try: rc {x['rc']} `{x['note'][:200]}`" for x in f.get("failures", [])) + ".")
            L.append(f"\nFirst build of `//top:images` (before the no-op rows; up to 3 tries): " + " ".join(fbs))
            for n in sizes:
                pr = sc_data["sizes"][n].get("probe")
                if pr:
                    L.append(f"\nProbe at {n}: build of the image whose copy step sends the most files "
                             f"(`{pr['label']}`, {pr['files']} files): rc {pr['rc']} in {pr['wall']:.1f}s"
                             + (f" — `{pr['note'][:300]}`" if pr["rc"] else "") + ".")
            L.append("")
            if "10000" in sc_data["sizes"]:
                rows = sc_data["sizes"]["10000"]["rows"]
                s = stats(rows["analysis"]["runs"]) if "analysis" in rows else None
                targets.append(("10k: loading + analysis ≤ 3 s", s["median"] <= 3 if s else False,
                                f"{s['median']:.2f} s" if s else "failed"))
                s = stats(rows["noopall"]["runs"]) if "noopall" in rows else None
                targets.append(("10k: no-op ≤ 2 s (`//top:all`: whole-graph analysis + keys, 50 cached images)",
                                s["median"] <= 2 if s else False, f"{s['median']:.2f} s" if s else "failed"))
                peak = max((r["rss_kb"] or 0) for row in rows.values() for r in row["runs"])
                targets.append(("10k: peak RSS ≤ 500 MB (any command above)", peak / 1024 <= 500, f"{peak / 1024:.0f} MB"))
            else:
                for t in ("10k: loading + analysis ≤ 3 s", "10k: no-op ≤ 2 s", "10k: peak RSS ≤ 500 MB"):
                    targets.append((t, None, "not measured (--quick)"))
    dg = data.get("digest")
    if dg:
        c, w = stats(dg["cold"]), stats(dg["warm"])
        rss = [r["rss_kb"] for r in dg["cold"] + dg["warm"] if r["rss_kb"]]
        L.append(f"## Digesting {dg['files']:,} source files\n")
        L.append("`mbuild explain //:tree` of a filegroup globbing every file (explain computes the keys, "
                 "so it digests every source). Cold: a new empty `--cache-dir` each run (no stat cache; the "
                 "OS page cache is warm all the same). Warm: the same cache dir again (stat cache).\n")
        L.append("| | s | peak MB |\n|---|---|---|")
        L.append(f"| cold | {fmt_s(c)} | {max(rss) / 1024:.0f} |" if rss else f"| cold | {fmt_s(c)} | — |")
        L.append(f"| warm | {fmt_s(w)} | |\n")
        targets.append(("warm digest of 100k files ≤ 1.5 s", w["median"] <= 1.5 if w else False,
                        f"{w['median']:.2f} s" if w else "failed"))
    if targets:
        L.append("## Targets\n")
        L.append("| target | result | measured |\n|---|---|---|")
        for t, ok, val in targets:
            L.append(f"| {t} | {verdict(ok)} | {val} |")
        L.append("")
    if data.get("profiles"):
        L.append("## Profiles\n")
        L.append("pyinstrument (from bench/.venv) over `python -m mbuild …` (the command, no-op fast path "
                 "included) and, for `*-cli`, `python -m mbuild.cli …` (the full CLI), text output:\n")
        for name, f in data["profiles"].items():
            L.append(f"- {name}: [{f}]({f})")
        L.append("")
    elif data.get("profile_note"):
        L.append(f"## Profiles\n\n{data['profile_note']}\n")
    if m.get("code") != data.get("code_end"):
        L.append(f"**Warning**: the mbuild code changed while this ran (`{m.get('code')}` at the start, "
                 f"`{data.get('code_end')}` at the end): each side-by-side row names the code it ran against.\n")
    L.append("Raw runs (every wall time, exit code, peak RSS): " + f"[{md.stem}.json]({md.stem}.json).\n")
    md.write_text("\n".join(L))


# --------------------------------------------------------------------------- chart

def chart(data: dict, png: Path) -> str | None:
    rows = []
    for sc in data["scenarios"]:
        b, m = stats(sc["bake"]), stats(sc["mbuild"])
        if b or m:
            rows.append((sc["name"], b, m))
    if not rows:
        return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        from pngchart import bar_chart  # the fallback: no text, see bench/pngchart.py
        bar_chart(png, [(n, b, m) for n, b, m in rows])
        return "fallback"
    fig, ax = plt.subplots(figsize=(11, 5), dpi=110)
    xs = range(len(rows))
    w = 0.38
    for off, side, color, idx in ((-w / 2, "docker buildx bake", "#4c72b0", 1), (w / 2, "mbuild", "#dd8452", 2)):
        med = [r[idx]["median"] if r[idx] else 0 for r in rows]
        lo = [r[idx]["median"] - r[idx]["min"] if r[idx] else 0 for r in rows]
        hi = [r[idx]["max"] - r[idx]["median"] if r[idx] else 0 for r in rows]
        bars = ax.bar([x + off for x in xs], med, w, yerr=[lo, hi], capsize=3, label=side, color=color)
        for bar, v in zip(bars, med):
            if v:
                ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), ha="center", va="bottom",
                            fontsize=7, xytext=(0, 2), textcoords="offset points")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([r[0] for r in rows])
    ax.set_ylabel("wall seconds (median, min–max bars; log scale)")
    ax.set_title(f"mbuild vs docker buildx bake, {data['date']} ({data['reps']} reps each, alternating)")
    ax.legend()
    ax.grid(axis="y", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    return "matplotlib"


# --------------------------------------------------------------------------- main

def cleanup_images(h: Harness, before: set[str]) -> None:
    subprocess.run(["docker", "rmi", *BAKE_TAGS], capture_output=True)
    for image_id in sorted(h.seen_images - before):
        tags = sh(["docker", "image", "inspect", "-f", "{{len .RepoTags}}", image_id])
        if tags == "0":
            subprocess.run(["docker", "rmi", image_id], capture_output=True)


def cleanup_registry() -> None:
    """Best effort: delete the bench's cache manifests from the local registry."""
    accept = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json",
                        "application/vnd.docker.distribution.manifest.list.v2+json"])
    for tag in ("python", "node"):
        try:
            req = urllib.request.Request(f"http://{REGISTRY}/v2/{CACHE_REPO}/manifests/{tag}", method="HEAD",
                                         headers={"Accept": accept})
            digest_ = urllib.request.urlopen(req, timeout=10).headers.get("Docker-Content-Digest")
            if digest_:
                urllib.request.urlopen(urllib.request.Request(
                    f"http://{REGISTRY}/v2/{CACHE_REPO}/manifests/{digest_}", method="DELETE"), timeout=10)
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench/run", description="mbuild benchmarks (see bench/README.md)")
    ap.add_argument("--reps", type=int, default=None, help="runs per side and measurement (default 5; --quick: 2)")
    ap.add_argument("--quick", action="store_true", help="2 reps, no 10k-target scale measurements")
    ap.add_argument("--only", action="append", default=[], metavar="SCENARIO",
                    help=f"run only these (repeatable or comma-separated): {', '.join(ALL)}")
    ap.add_argument("--date", default=None, help="report date (default: today, UTC)")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs) for inspection")
    a = ap.parse_args(argv)
    raw_argv = list(argv if argv is not None else sys.argv[1:])
    reps = a.reps or (2 if a.quick else 5)
    only = [s for o in a.only for s in o.split(",") if s]
    bad = [s for s in only if s not in ALL]
    if bad:
        ap.error(f"unknown scenario {', '.join(bad)}; choose from {', '.join(ALL)}")
    chosen = only or ALL
    date = a.date or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    RESULTS.mkdir(parents=True, exist_ok=True)
    if not MBUILD.exists():
        print(f"bench: {MBUILD} is missing: run scripts/env-up first", file=sys.stderr)
        return 2

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    tmp = Path(tempfile.mkdtemp(prefix="mbuild-bench.", dir="/var/tmp"))
    h = Harness(tmp, reps)
    before = set(sh(["docker", "images", "-a", "-q", "--no-trunc"]).split())
    t_start = time.perf_counter()
    data: dict = {"date": date, "argv": raw_argv, "reps": reps, "quick": a.quick, "machine": machine_info(),
                  "scenarios": []}
    prof = Profiler(h, date)
    if not prof.available:
        data["profile_note"] = "pyinstrument is not installed in bench/.venv: no profiles."
    sbs = SideBySide(h, reps)
    log(f"temp dir {tmp}; scenarios: {', '.join(chosen)}; {reps} reps")
    log("byte-compiling mbuild and its dependencies into bench/.venv/pycache (untimed)")
    subprocess.run([str(MBUILD_PY), "-m", "compileall", "-q", "-j", "0", str(ROOT / "tools" / "mbuild" / "mbuild"),
                    *map(str, (ROOT / ".venv" / "lib").glob("python*/site-packages"))],
                   env=BASE_ENV, capture_output=True)
    try:
        for name in SIDE_BY_SIDE:
            if name not in chosen:
                continue
            log(f"scenario {name}")
            fn = {"cold": sbs.cold, "noop": sbs.noop, "remote": sbs.remote, "remote-shared": sbs.remote_shared,
                  "affected": sbs.affected}.get(name) or (lambda n=name: sbs.edit(n))
            try:
                data["scenarios"].append(fn().to_json())
            except RuntimeError as e:
                log(f"scenario {name} could not run: {e}")
                sc = Scenario(name, notes=[f"could not run: {str(e)[:400]}"])
                data["scenarios"].append(sc.to_json())
        if "profile" in chosen and prof.available:
            log("profiling the no-op build of //infra:compose")
            sbs.warm_up()
            sbs.mbuild(name="warm-mbuild-profile")  # e.g. after `affected`, the loaded image is the worktree's
            args = ["--cache-dir", str(sbs.cache), "build", "--progress", "plain", "//infra:compose"]
            prof.profile("noop-compose", args, ROOT)
            prof.profile("noop-compose-cli", args, ROOT, module="mbuild.cli")  # without the fast path
        if "scale" in chosen or "profile" in chosen:
            sizes = ([1000] if a.quick else [1000, 10000]) if "scale" in chosen else []
            data["scale"] = scale(h, sizes, reps, [10000] if "profile" in chosen and prof.available else [],
                                  prof if "profile" in chosen else None)
        if "digest" in chosen:
            data["digest"] = digest(h, reps, 100_000, prof if "profile" in chosen else None)
    except KeyboardInterrupt:
        log("interrupted: writing what was measured")
        data["interrupted"] = True
    finally:
        sbs.edits.restore()
        if any(s in chosen for s in SIDE_BY_SIDE) or sbs.warm:
            log("leaving the project images built from HEAD's sources")
            sbs.mbuild(name="final-mbuild")
        cleanup_images(h, before)
        if sbs.populated:
            cleanup_registry()
        data["profiles"] = prof.files
        data["code_end"] = code_state()
        data["elapsed"] = time.perf_counter() - t_start
        md = RESULTS / f"{date}.md"
        png = RESULTS / f"{date}-sidebyside.png"
        how = chart(data, png) if data["scenarios"] else None
        data["chart"] = how
        (RESULTS / f"{date}.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
        write_report(data, md, png.name if how else None)
        log(f"wrote {md.relative_to(ROOT)}" + (f" and {png.relative_to(ROOT)} ({how})" if how else ""))
        if a.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
