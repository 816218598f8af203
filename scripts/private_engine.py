#!/usr/bin/env python3
"""A private Docker engine: its own containerd and dockerd, with an empty data
root, content store and BuildKit cache, i.e. what a new machine has.

CI runs the suite against one (``scripts/test``), the bench measures cold and
remote scenarios on one, and tests start their own for what must not touch
the shared engine (a second engine on TCP with TLS, an engine restarted
mid-build). The shared engine (``/var/run/docker.sock``) is never touched.

Networking, as the environment notes say it must be for build steps to reach
PyPI and npm: a bridge of its own with an address, NAT for its subnet, and
FORWARD accept rules (the shared engine's FORWARD policy is DROP). The
networks ``docker network create`` and ``docker compose up`` make get /28s of
a pool of its own (172.31.N.0/24, ``--default-address-pool``) with the same
NAT and FORWARD rules, so a compose stack's services reach each other. dockerd
runs with ``--bridge BR --iptables=false --ip-masq=false`` (never
``--bridge=none``, which deletes the shared engine's ``docker0``). Everything
is removed again by :meth:`PrivateEngine.stop`, and ``docker0`` is checked to
be still there.

What a killed run leaves (a bridge, NAT and FORWARD rules, mounts) is found
again: each engine's state is also recorded under ``/run/mbuild-private-engines/``
by its bridge, and every start first sweeps the records whose processes (the
starter's, containerd's, dockerd's) are all gone, stopping what they name.
``scripts/private_engine.py sweep`` does only that.

As a command (state is kept in DIR, so ``stop`` may run in another process)::

    scripts/private_engine.py start DIR [--tls-port PORT --certs CERTDIR]   # prints DOCKER_HOST=...
    scripts/private_engine.py stop DIR
    scripts/private_engine.py sweep      # what dead engines left behind
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

SUBNETS = range(100, 200)  # 172.30.N.0/24 (its bridge) and 172.31.N.0/24 (its networks), one N per engine
STATE = "engine.json"
REGISTRY = Path("/run/mbuild-private-engines")  # <bridge>.json: the state of each engine not yet stopped


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check)


def _wait(pred, limit: float, what: str, log: Path | None = None) -> None:
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    tail = ""
    if log is not None and log.exists():
        tail = "\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    raise RuntimeError(f"{what} did not come up within {limit:.0f}s{tail}")


def _subnet_in_use(n: int) -> bool:
    addresses = _run("ip", "-o", "addr", check=False).stdout
    return f"172.30.{n}." in addresses or f"172.31.{n}." in addresses


def docker0_present() -> bool:
    return os.path.exists("/sys/class/net/docker0")


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")  # (a zombie too: it is still someone's to reap)


def sweep_dead() -> list[str]:
    """Stop every recorded engine none of whose processes runs any more (a
    run killed before its clean-up); returns the bridges removed."""
    swept = []
    for record in sorted(REGISTRY.glob("mbe*.json")):
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if any(pid and _alive(pid) for pid in [doc.get("owner", 0), *doc.get("pids", {}).values()]):
            continue
        PrivateEngine.from_state(doc).stop()
        record.unlink(missing_ok=True)
        swept.append(doc.get("bridge", record.stem))
    return swept


class PrivateEngine:
    """One private containerd + dockerd pair under ``dir`` (short: socket paths are limited)."""

    def __init__(self, dir: str | Path, tls_port: int | None = None, certs: str | Path | None = None) -> None:
        self.dir = Path(dir).resolve()
        self.sock = self.dir / "docker.sock"
        self.tls_port = tls_port
        self.certs = Path(certs).resolve() if certs else None
        self.bridge = ""
        self.subnet = 0
        self.pids: dict[str, int] = {}
        self.rules: list[list[str]] = []
        self.owner = 0  # the process that started the engine

    # ------------------------------------------------------------------ addresses

    @property
    def host(self) -> str:
        """``DOCKER_HOST`` for the unix socket."""
        return f"unix://{self.sock}"

    @property
    def tcp_host(self) -> str:
        return f"tcp://127.0.0.1:{self.tls_port}"

    def env(self) -> dict[str, str]:
        """Environment for the docker CLI, SDK and mbuild to use this engine."""
        env = dict(os.environ, DOCKER_HOST=self.host)
        for key in ("DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
            env.pop(key, None)
        return env

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "PrivateEngine":
        for bridge in sweep_dead():
            print(f"private_engine: removed {bridge}, left by an engine whose processes are gone", file=sys.stderr)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.owner = os.getpid()
        try:
            self._network_up()
            self._start_containerd()
            self._start_dockerd()
        except BaseException:
            self.stop()
            raise
        self._save()
        return self

    def _network_up(self) -> None:
        # Creating the bridge is what claims N: two engines starting at once
        # cannot both get it (the loser tries the next N, and never deletes
        # the winner's bridge, which a failed start would otherwise do).
        for n in SUBNETS:
            if _subnet_in_use(n) or _run("ip", "link", "add", f"mbe{n}", "type", "bridge",
                                         check=False).returncode != 0:
                continue
            self.subnet, self.bridge = n, f"mbe{n}"
            break
        else:
            raise RuntimeError("no free 172.30.N.0/24 subnet for a private engine")
        net, pool = f"172.30.{self.subnet}.0/24", self.network_pool
        self._save()  # from here on, stop() must remove the bridge
        _run("ip", "addr", "add", f"172.30.{self.subnet}.1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for rule in (["-t", "nat", "POSTROUTING", "-s", net, "!", "-o", self.bridge, "-j", "MASQUERADE"],
                     ["FORWARD", "-i", self.bridge, "-j", "ACCEPT"],
                     ["FORWARD", "-o", self.bridge, "-j", "ACCEPT"],
                     ["-t", "nat", "POSTROUTING", "-s", pool, "!", "-d", pool, "-j", "MASQUERADE"],
                     ["FORWARD", "-s", pool, "-j", "ACCEPT"],
                     ["FORWARD", "-d", pool, "-j", "ACCEPT"]):
            table = rule[:2] if rule[0] == "-t" else []
            body = rule[2:] if table else rule
            _run("iptables", *table, "-I", *body)
            self.rules.append(table + body)
            self._save()
        with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
            f.write("1")

    @property
    def network_pool(self) -> str:
        """The addresses of the networks this engine creates (a /28 each)."""
        return f"172.31.{self.subnet}.0/24"

    def _start_containerd(self) -> None:
        d = self.dir
        (d / "containerd.toml").write_text(
            f'version = 2\nroot = "{d}/ctd-root"\nstate = "{d}/ctd-state"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{d}/containerd.sock"\n[ttrpc]\n  address = "{d}/containerd.sock.ttrpc"\n')
        log = d / "containerd.log"
        p = subprocess.Popen(["containerd", "--config", str(d / "containerd.toml")], stdout=open(log, "ab"),
                             stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids["containerd"] = p.pid
        self._save()
        _wait(lambda: (d / "containerd.sock").exists(), 30, "private containerd", log)

    def _dockerd_args(self) -> list[str]:
        d = self.dir
        (d / "daemon.json").write_text('{"features":{"containerd-snapshotter":true}}\n')
        args = ["dockerd", "--config-file", str(d / "daemon.json"), f"--containerd={d}/containerd.sock",
                "--data-root", str(d / "root"), "--exec-root", str(d / "exec"), "--pidfile", str(d / "docker.pid"),
                "-H", self.host, "--bridge", self.bridge, "--iptables=false", "--ip6tables=false",
                "--ip-masq=false"]
        # The pool only on a data root's first start. Docker 26 started AGAIN
        # on a data root with --default-address-pool deletes the host's
        # docker0 (checked here: after a restart, or a clean stop and start,
        # the shared engine's bridge was gone and its containers had no
        # network); without the flag a restart leaves it alone.
        if not (d / "root").exists():
            args += ["--default-address-pool", f"base={self.network_pool},size=28"]
        if self.tls_port:
            c = self.certs
            args += ["-H", self.tcp_host, "--tlsverify", "--tlscacert", str(c / "ca.pem"),
                     "--tlscert", str(c / "server-cert.pem"), "--tlskey", str(c / "server-key.pem")]
        return args

    def _start_dockerd(self) -> None:
        log = self.dir / "dockerd.log"
        p = subprocess.Popen(self._dockerd_args(), stdout=open(log, "ab"), stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.pids["dockerd"] = p.pid
        self._save()
        _wait(self.answers, 60, "private dockerd", log)

    def answers(self) -> bool:
        return _run("docker", "-H", self.host, "version", check=False).returncode == 0

    def kill_dockerd(self) -> None:
        """SIGKILL dockerd (an engine crash); containerd and the data root stay."""
        pid = self.pids.pop("dockerd", 0)
        if pid:
            _signal(pid, signal.SIGKILL)
            _reap(pid, 10)
        self._save()

    def restart_dockerd(self) -> None:
        """Start dockerd again on the same state, after :meth:`kill_dockerd`."""
        (self.dir / "docker.pid").unlink(missing_ok=True)
        self._start_dockerd()

    def stop(self) -> None:
        for name in ("dockerd", "containerd"):  # dockerd first, then containerd
            pid = self.pids.pop(name, 0)
            if pid:
                _signal(pid, signal.SIGTERM)
                if not _reap(pid, 30):
                    _signal(pid, signal.SIGKILL)
                    _reap(pid, 10)
        # Shims of containers that outlived dockerd hold mounts below our folder.
        for line in _run("pgrep", "-af", "containerd-shim", check=False).stdout.splitlines():
            if str(self.dir) in line:
                _signal(int(line.split()[0]), signal.SIGKILL)
        mounts = [l.split()[1] for l in Path("/proc/self/mounts").read_text().splitlines()
                  if len(l.split()) > 1 and l.split()[1].startswith(str(self.dir))]
        for m in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", m, check=False)
        for rule in reversed(self.rules):
            table = rule[:2] if rule[0] == "-t" else []
            _run("iptables", *table, "-D", *(rule[2:] if table else rule), check=False)
        self.rules.clear()
        if self.bridge.startswith("mbe"):  # only ever a bridge of ours: never docker0
            _run("ip", "link", "del", self.bridge, check=False)
            (REGISTRY / f"{self.bridge}.json").unlink(missing_ok=True)
        self.bridge = ""
        self._save()

    def remove(self) -> None:
        """:meth:`stop`, then delete the engine's folder."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # ------------------------------------------------------------------ images

    def import_bases(self, root: Path, only: tuple[str, ...] = ()) -> None:
        """The base images, brought in by ``scripts/env-up`` as on a machine of
        this kind (``only``: just those names)."""
        env = self.env()
        if only:
            env["ONLY_IMAGES"] = " ".join(only)
        p = subprocess.run([str(root / "scripts" / "env-up"), "--images-only"], env=env, capture_output=True,
                           text=True)
        if p.returncode != 0:
            raise RuntimeError(f"importing base images into {self.host}: {p.stderr[-2000:]}")

    # ------------------------------------------------------------------ state

    def _save(self) -> None:
        doc = {"dir": str(self.dir), "bridge": self.bridge, "subnet": self.subnet, "pids": self.pids,
               "rules": self.rules, "owner": self.owner, "tls_port": self.tls_port,
               "certs": str(self.certs) if self.certs else None}
        places = [self.dir / STATE] if self.dir.is_dir() else []  # (a swept engine's folder may be gone)
        if self.bridge.startswith("mbe"):
            REGISTRY.mkdir(parents=True, exist_ok=True)
            places.append(REGISTRY / f"{self.bridge}.json")
        for path in places:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, path)

    @classmethod
    def load(cls, dir: str | Path) -> "PrivateEngine":
        d = Path(dir).resolve()
        return cls.from_state(json.loads((d / STATE).read_text()), d)

    @classmethod
    def from_state(cls, doc: dict, dir: Path | None = None) -> "PrivateEngine":
        eng = cls(dir or Path(doc["dir"]), doc.get("tls_port"), doc.get("certs"))
        eng.bridge, eng.subnet = doc["bridge"], doc["subnet"]
        eng.pids, eng.rules = dict(doc["pids"]), [list(r) for r in doc["rules"]]
        eng.owner = doc.get("owner", 0)
        return eng

    def __enter__(self) -> "PrivateEngine":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _reap(pid: int, limit: float) -> bool:
    """Wait for ``pid`` to end (reaping it if it is our child); True if it did."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return True
        except ChildProcessError:  # not our child: poll for it
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start an engine in DIR; prints DOCKER_HOST=...")
    s.add_argument("dir")
    s.add_argument("--tls-port", type=int)
    s.add_argument("--certs", help="folder with ca.pem, server-cert.pem, server-key.pem (with --tls-port)")
    s.add_argument("--import-bases", action="store_true", help="import the base images as scripts/env-up does")
    t = sub.add_parser("stop", help="stop the engine in DIR and remove its network")
    t.add_argument("dir")
    t.add_argument("--remove", action="store_true", help="delete DIR as well")
    sub.add_parser("sweep", help="remove what engines whose processes are gone left behind")
    args = ap.parse_args(argv)
    if args.cmd == "sweep":
        for bridge in sweep_dead():
            print(f"private_engine: removed {bridge}")
        return 0
    if args.cmd == "start":
        eng = PrivateEngine(args.dir, args.tls_port, args.certs).start()
        if args.import_bases:
            eng.import_bases(Path(__file__).resolve().parent.parent)
        print(f"DOCKER_HOST={eng.host}")
        return 0
    eng = PrivateEngine.load(args.dir)
    eng.remove() if args.remove else eng.stop()
    if not docker0_present() and Path("/var/run/docker.sock").exists():
        print("private_engine: warning: docker0 is gone: the shared engine's containers have no network",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
