"""Running one command as a timed whole process, with its output in a log file.

Timing: ``time.perf_counter`` around a blocking wait, so interpreter start-up
and engine round trips count. Peak RSS comes from ``/usr/bin/time -f %M``
when present, else from ``getrusage(RUSAGE_CHILDREN)`` in a one-shot wrapper
process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from settings import ROOT, RUN_TIMEOUT, base_env
from stats import counted


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd: list[str], **kw) -> str:
    """stdout of ``cmd`` (stripped); for quick facts, never for timed runs."""
    return subprocess.run(cmd, capture_output=True, text=True, **kw).stdout.strip()


def tail(path: Path, n: int) -> str:
    """The last ``n`` non-blank lines of a log, on one line."""
    try:
        lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


@dataclass
class Run:
    """One timed process: wall seconds, exit code, peak RSS (KiB) if asked for, its log."""

    wall: float
    rc: int
    rss_kb: int | None = None
    log: str = ""
    note: str = ""
    retries: int = 0  # downloads the log says were retried: the run measured the network's stall too

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def counted(self) -> bool:
        """In the medians (the rule is stats.counted's)."""
        return counted(self.to_json())

    def fail(self, note: str) -> None:
        """Mark a run that exited 0 but did not do its job (e.g. an image missing afterwards)."""
        self.rc, self.note = 99, note

    def to_json(self) -> dict:
        return {"wall": round(self.wall, 4), "rc": self.rc, "rss_kb": self.rss_kb, "note": self.note,
                "retries": self.retries}


_RSS_WRAPPER = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


class Harness:
    """Runs commands for one bench run; every command's output goes to ``tmp/logs``.

    ``env`` passed to :meth:`run` is added to :func:`settings.base_env` and the
    harness's own defaults (a private ``XDG_CACHE_HOME``, so mbuild's no-op
    stamps never land in the user's ~/.cache); a value of None removes the
    variable.
    """

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.nlog = 0
        self.time_bin = "/usr/bin/time" if Path("/usr/bin/time").exists() else None
        xdg = tmp / "xdg-cache"
        xdg.mkdir(exist_ok=True)
        self.env = dict(base_env(), XDG_CACHE_HOME=str(xdg))

    def run(self, cmd: list[str], cwd: Path = ROOT, env: dict[str, str | None] | None = None, name: str = "run",
            rss: bool = False, timeout: float = RUN_TIMEOUT) -> Run:
        """Run ``cmd`` once, timed as a whole process; a timer kills it after ``timeout`` s (exit 124)."""
        self.nlog += 1
        logf = self.logs / f"{self.nlog:04d}-{name}.log"
        full_env = dict(self.env)
        for k, v in (env or {}).items():
            if v is None:
                full_env.pop(k, None)
            else:
                full_env[k] = v
        rss_file = server_rss = None
        argv = list(cmd)
        if rss:
            rss_file = self.logs / f"{self.nlog:04d}-{name}.rss"
            # With the warm server, the command runs in a child of the server:
            # the client reports that child's peak (MBUILD_SERVER_RUSAGE).
            server_rss = self.logs / f"{self.nlog:04d}-{name}.server-rss"
            full_env["MBUILD_SERVER_RUSAGE"] = str(server_rss)
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
        retries, note = _network_retries(logf)
        if expired.is_set():
            rc, note = 124, f"timed out after {timeout:.0f}s"
        measured = [k for k in (_read_rss(rss_file), _read_rss(server_rss)) if k is not None]
        r = Run(wall, rc, max(measured) if measured else None, str(logf), note, retries)
        if not r.ok:
            log(f"  FAILED ({rc}{', ' + note if note else ''}): {' '.join(cmd)}; log {logf}")
            r.note = (note + "; " if note else "") + tail(logf, 3)
        return r

    def must(self, cmd: list[str], cwd: Path = ROOT, env: dict[str, str | None] | None = None,
             name: str = "setup", timeout: float = RUN_TIMEOUT) -> Run:
        """:meth:`run` for an untimed setup step: a failure stops the scenario (RuntimeError)."""
        r = self.run(cmd, cwd, env, name, timeout=timeout)
        if not r.ok:
            raise RuntimeError(f"setup step failed: {' '.join(cmd)}\n{tail(Path(r.log), 15)}")
        return r


# What the downloading tools print when a connection broke and they retry:
# such a run measured the network's stall as much as the build. mbuild's
# progress shows a retried step's failed attempt as one line, "attempt 1 of 3
# failed (REASON), retrying" (its "mbuild: attempt N of M" markers stay in the
# full log); the seed's corepack loop shows Node's error itself: a fetch cut
# off after a stall ("TypeError: terminated"), a DNS or connect failure.
_RETRY_MARKS = ("WARNING: Retrying (", "mbuild: attempt 2 of 3", "), retrying", "ERR_PNPM_META_FETCH_FAIL",
                "ECONNRESET", "TypeError: terminated", "EAI_AGAIN", "ETIMEDOUT")


def _network_retries(logf: Path) -> tuple[int, str]:
    """How many downloads a run's log says were retried, and a note naming them ("" when none)."""
    try:
        text = logf.read_text(errors="replace")
    except OSError:
        return 0, ""
    seen = {mark: text.count(mark) for mark in _RETRY_MARKS if mark in text}
    if not seen:
        return 0, ""
    return sum(seen.values()), "network retries in the log: " + ", ".join(
        f"{n}× `{mark.strip(' (')}`" for mark, n in seen.items())


def _read_rss(path: Path | None) -> int | None:
    if path is None or not path.exists():
        return None
    try:
        return int(path.read_text().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def _kill_group(p: subprocess.Popen, expired: threading.Event) -> None:
    expired.set()
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass
