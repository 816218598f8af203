"""The no-op fast path: answer an unchanged build before loading anything.

A no-op build through the phases costs ~0.25 s, most of it importing
(Starlark, protobuf, click) and re-deriving facts that have not changed. After
each successful build of plain labels, mbuild writes a *no-op stamp*:

* the stat facts (size, mtime, ctime, inode) of every file the build read
  (WORKSPACE.toml, .dockerignore, BUILD and .bzl files, the workspace's rule
  modules and the workspace modules they import, every source) and of every
  directory a glob could have listed, and of mbuild's own modules (its
  built-in rules among them);
* the engine's image ids for the base images and for the built images;
* the sha256 of each generated output file, and the build's report.

The next identical command (same arguments, directory and environment)
re-checks all of it — stats, engine ids, output files — and if every fact
holds, prints the stored report without importing the build machinery. Any
difference, or anything unreadable, falls through to the normal build,
which recomputes keys and writes a new stamp. So the fast path can only ever
answer what a full no-op build would have answered.

The stamp also says which of those files are *sources* only (read by a step,
never by loading or analysis), and the build's graph: each target's
dependencies and the sources it adds to its key. When nothing but sources
changed, :func:`changed_sources` says which, and the build
(:mod:`mbuild.delta`) rebuilds only the reported targets they reach: the
one-change path. A folder whose stat facts changed but whose entries did
not (an editor saved a file by renaming a new one over it) is no change to
what a glob lists: each folder's entries are recorded by digest too.

Only cheap imports here: this runs before everything else. Stamps are
stored with ``marshal`` (built in, instant; keyed by the Python version) and
hashed with the built-in sha256, because even ``json``'s and ``hashlib``'s
imports are a visible part of a 50 ms budget.
"""

from __future__ import annotations

import gc
import marshal
import os
import sys
from contextlib import contextmanager
from struct import Struct

try:
    from _sha256 import sha256  # CPython 3.11's built-in module: no OpenSSL start-up
except ImportError:  # pragma: no cover - other Pythons
    from hashlib import sha256

STAMP_VERSION = 5
_ENV = ("SOURCE_DATE_EPOCH", "MBUILD_BUILDKIT", "MBUILD_CACHE_DIR", "MBUILD_REMOTE_CACHE", "DOCKER_HOST",
        "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_TLS", "DOCKER_CERT_PATH")
# `//pkg:all` and `//pkg:*` depend only on pkg's BUILD file (recorded); a
# recursive pattern depends on every directory below, so it is not answered.
_PATTERN_MARKS = ("...",)


def stamp_dir(env=None) -> str:
    env = os.environ if env is None else env
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(env.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "mbuild-noop")


def stamp_path(argv: list[str], cwd: str, env=None) -> str:
    """Where the stamp of ``argv`` run in ``cwd`` (with ``env``, by default this process's) is kept."""
    env = os.environ if env is None else env
    doc = repr([STAMP_VERSION, sys.version, cwd, argv, [env.get(k) for k in _ENV]])
    return os.path.join(stamp_dir(env), sha256(doc.encode()).hexdigest() + ".stamp")


def eligible(argv: list[str]) -> bool:
    """Label builds only (no recursive patterns), without --no-cache or --affected,
    and without options that do something beyond the engine's images (a
    push, a tarball, an upload of local hits)."""
    args = [a for a in argv if a != "build"]
    labels = [a for a in args if a.startswith(("//", ":"))]
    if not labels or any(m in a for a in labels for m in _PATTERN_MARKS):
        return False
    return not any(a.split("=", 1)[0] in _NOT_ELIGIBLE or a.startswith("-o") for a in args)


_NOT_ELIGIBLE = ("--no-cache", "--affected", "--debug", "-h", "--help", "--push", "--output", "--remote-upload")


_FACTS = Struct("<qqqQ")  # size, mtime ns, ctime ns, inode: one bytes object a path (marshal loads it as one)


def lstat_facts(path: str) -> bytes | None:
    """A path's stat facts as a stamp records them (None: absent)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return _FACTS.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# A file changed this close to (or after) the moment a build looked at it is
# *racy*, as git calls it: file times come from a clock that ticks every few
# milliseconds, so a second write in the same tick can leave size and times
# as they were, and a write during the build comes after the bytes the build
# read. Its facts are recorded as RACY, which no file's facts equal: the next
# build looks again (and its key, from the bytes, decides).
RACY_NS = 2_000_000_000  # the coarsest filesystems' clock tick (as the stat cache's margin)
RACY = b"racy"


def settled(facts: bytes | None, looked_ns: int) -> bytes | None:
    """``facts`` as a stamp may record them, taken no earlier than ``looked_ns``."""
    if facts is not None and facts != RACY and _FACTS.unpack(facts)[2] >= looked_ns - RACY_NS:
        return RACY
    return facts


def _tool_dirs() -> list[str]:
    """mbuild's package folder and buildkit-py's, found without importing it."""
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.find_spec("buildkit")
    dirs = [here]
    if spec is not None and spec.submodule_search_locations:
        dirs.extend(spec.submodule_search_locations)
    return dirs


def tool_files() -> list[str]:
    """The tool's own modules: any change to them falls through to a real build."""
    out = []
    for top in _tool_dirs():
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__"]
            out.extend(os.path.join(dirpath, f) for f in filenames if f.endswith((".py", ".proto")))
    return sorted(out)


# ------------------------------------------------------------------ engine


def engine_image_ids(refs: list[str], socket_path: str) -> list[str | None]:
    """The engine's image id for each ref (None when absent or unreadable).

    Plain HTTP/1.0 on raw sockets, all requests sent before any answer is
    read: the engine works on them at once, and http.client's import alone
    would cost more than the whole check.
    """
    import socket

    socks = []
    for ref in refs:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(socket_path)
            # The engine's route takes a reference as is, slashes and all.
            s.sendall(f"GET /images/{ref}/json HTTP/1.0\r\nHost: docker\r\n\r\n".encode())
        except OSError:
            s.close()
            s = None
        socks.append(s)
    out: list[str | None] = []
    for s in socks:
        if s is None:
            out.append(None)
            continue
        try:
            chunks = []
            while data := s.recv(65536):
                chunks.append(data)
            head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
            ok = head.split(b" ", 2)[1:2] == [b"200"]
            # The id is a fixed-form field: find it without a JSON parser.
            at = body.find(b'"Id":"sha256:')
            out.append(body[at + 6:at + 77].decode() if ok and at >= 0 else None)
        except (OSError, ValueError, AttributeError):
            out.append(None)
        finally:
            s.close()
    return out


# ------------------------------------------------------------------ writing


def listing(path: str) -> str | None:
    """A digest of a folder's entries, names and whether each is a folder (what a glob sees)."""
    try:
        with os.scandir(path) as it:
            names = sorted(f"{e.name}/" if e.is_dir(follow_symlinks=False) else e.name for e in it)
    except OSError:
        return None
    return sha256("\0".join(names).encode()).digest()[:16]


def glob_dirs(root: str, packages: list[str], skip) -> list[str]:
    """Every directory under the loaded packages that a glob could list."""
    out = []
    for package in packages:
        base = os.path.join(root, package) if package else root
        for dirpath, dirnames, _ in os.walk(base):
            dirnames[:] = [d for d in dirnames if not skip(d)]
            out.append(dirpath)
    return out


def write_stamp(argv: list[str], cwd: str, files: list[str], dirs: list[str], engine_socket: str,
                images: dict[str, str], outputs: dict[str, str], report: dict,
                sources: list[str] = (), graph: dict[str, tuple[list[str], set[str]]] | None = None,
                started_ns: int = 0) -> None:
    """Record what a successful build read and produced (best effort, atomic).

    ``files`` are what loading and analysis read, ``sources`` what only
    steps read. ``graph`` maps every target of the build to its dependencies
    and the sources it adds to its key (absolute paths); a source that is
    also one of ``files`` (or an mbuild module) is not one the one-change
    path may see changed. A file or folder changed after ``started_ns``
    (when the build began reading) is recorded as racy."""
    try:
        structure = set(files) | set(tool_files())
        folders = {d: settled(lstat_facts(d), started_ns) for d in sorted(set(dirs))}
        doc = {
            "version": STAMP_VERSION,
            "engine": engine_socket,
            "files": {p: settled(lstat_facts(p), started_ns) for p in sorted(structure | set(sources))},
            "dirs": folders,
            # (a folder changed during the build has no listing: its entries may not be those globbed)
            "listings": {d: None if facts is RACY else listing(d) for d, facts in folders.items()},
            "images": images,
            "outputs": outputs,
            "report": report,
        }
        if graph is not None:
            only_read_by_steps = sorted(set(sources) - structure)
            at = {p: i for i, p in enumerate(only_read_by_steps)}
            labels = sorted(graph)
            number = {label: i for i, label in enumerate(labels)}
            deps = [[number[d] for d in graph[label][0]] for label in labels]
            dependants: list[list[int]] = [[] for _ in labels]
            for t, ds in enumerate(deps):
                for d in ds:
                    dependants[d].append(t)
            adds = [sorted(at[p] for p in graph[label][1] if p in at) for label in labels]
            added_by: list[list[int]] = [[] for _ in only_read_by_steps]
            for t, sources_added in enumerate(adds):
                for i in sources_added:
                    added_by[i].append(t)
            # deps and adds describe the graph; dependants and added_by are the same, reversed: what a change walks.
            doc["delta"] = {"sources": only_read_by_steps, "targets": labels, "deps": deps, "adds": adds,
                            "dependants": dependants, "added_by": added_by}
        save_stamp(argv, cwd, doc)
    except OSError:
        pass


def stamped_outcome(o, root: str, images: dict[str, str], outputs: dict[str, str]) -> dict:
    """What a stamp keeps of one build outcome: its image's digest into
    ``images``, the sha256 of each file it generated into ``outputs``, and
    its JSON record as the stamp answers it again (returned)."""
    if o.image and o.manifest_digest:
        images[o.image] = o.manifest_digest
    for rel in o.files:
        path = os.path.join(root, rel)
        with open(path, "rb") as f:
            outputs[path] = sha256(f.read()).hexdigest()
    return dict(o.to_json(), cached=True, seconds=0.0, source="noop-stamp")


def save_stamp(argv: list[str], cwd: str, doc: dict) -> None:
    from pathlib import Path

    from .atomicfile import writing

    data = marshal.dumps(doc)
    with writing(Path(stamp_path(argv, cwd)), umasked=True) as f:  # (never on the no-op path: imports allowed)
        f.write(data)




def clear_stamps() -> None:
    import shutil

    shutil.rmtree(stamp_dir(), ignore_errors=True)


# ------------------------------------------------------------------ reading


@contextmanager
def collector_paused():
    """No cyclic garbage collection while a stamp is read and checked: it
    makes tens of thousands of objects, none of them cyclic, and in a process
    that has imported the build machinery each collection they trigger scans
    all of it (at 10,000 targets, 5-15 ms of a check)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# Set by the warm server in the process it forks for a command
# (:mod:`mbuild.warm_stamps`): stamp path -> (the stamp file's identity when
# the server read it, its document, the paths that may have changed since).
warm: dict[str, tuple[tuple, dict, frozenset[str]]] = {}


def _stamp(argv: list[str], cwd: str) -> tuple[dict, frozenset[str] | None] | None:
    """This command's stamp, if there is one and mbuild's own modules are the
    ones it lists; with the paths to look at again (None: all of them)."""
    if not eligible(argv):
        return None
    path = stamp_path(argv, cwd)
    held = warm.get(path)
    if held is not None:
        from .warm_stamps import identity

        if identity(path) == held[0]:
            return held[1], held[2]
    try:
        with open(path, "rb") as f:
            doc = decode_stamp(f.read())
    except OSError:
        return None
    return None if doc is None else (doc, None)


def decode_stamp(data: bytes) -> dict | None:
    """A stamp file's document, if it is one this mbuild wrote and may answer from."""
    try:
        doc = marshal.loads(data)  # (read whole: marshal.load(f) reads in small pieces, 20x slower)
    except (ValueError, EOFError, TypeError):
        return None
    if not isinstance(doc, dict) or doc.get("version") != STAMP_VERSION:
        return None
    if not set(tool_files()) <= doc["files"].keys():
        return None  # mbuild itself changed (a module was added)
    return doc


def _among(facts: dict, suspects: frozenset[str] | None):
    """The entries of ``facts`` to look at again: all, or the suspects among them."""
    return facts.items() if suspects is None else [(p, facts[p]) for p in suspects if p in facts]


def try_noop(argv: list[str]) -> dict | None:
    """The stored report if nothing this command depends on has changed, else None."""
    with collector_paused():
        found = _stamp(argv, os.getcwd())
        if found is None:
            return None
        doc, suspects = found
        for path, facts in _among(doc["files"], suspects):  # None: the file was absent, and must still be
            if lstat_facts(path) != facts:
                return None
        return doc["report"] if _engine_and_outputs_hold(doc, suspects) else None


def changed_sources(argv: list[str], cwd: str) -> tuple[dict, dict, dict] | None:
    """The stamp, the facts now of its changed files and of its changed
    folders, when every file that changed is one of its sources (nothing
    loading or analysis reads), no folder's entries changed, and all else
    holds as for the no-op: engine images, generated files. None when
    anything else changed, or nothing did."""
    with collector_paused():
        return _changed_sources(argv, cwd)


def _changed_sources(argv: list[str], cwd: str) -> tuple[dict, dict, dict] | None:
    found = _stamp(argv, cwd)
    if found is None or "delta" not in found[0]:
        return None
    doc, suspects = found
    changed = {}
    for path, facts in _among(doc["files"], suspects):
        now = lstat_facts(path)
        if now != facts:
            changed[path] = now
    if not changed or not set(changed) <= set(doc["delta"]["sources"]):
        return None
    folders = {}
    for path, facts in _among(doc["dirs"], suspects):
        now = lstat_facts(path)
        if now != facts:
            recorded = doc["listings"].get(path)
            if now is None or recorded is None or listing(path) != recorded:
                return None  # an entry came or went: what a glob lists may differ
            folders[path] = now
    return (doc, changed, folders) if _engine_and_outputs_hold(doc, check_dirs=False) else None


def _engine_and_outputs_hold(doc: dict, suspects: frozenset[str] | None = None, check_dirs: bool = True) -> bool:
    """The stamp's folders, generated files and engine images are as it recorded them."""
    for path, facts in _among(doc["dirs"], suspects) if check_dirs else ():
        if lstat_facts(path) != facts:
            return False
    for path, sha in doc["outputs"].items():
        try:
            with open(path, "rb") as f:
                if sha256(f.read()).hexdigest() != sha:
                    return False
        except OSError:
            return False
    if not doc["images"]:
        return True
    refs = list(doc["images"])
    return engine_image_ids(refs, doc["engine"]) == [doc["images"][r] for r in refs]


def main_fast(argv: list[str]) -> bool:
    """Print a no-op build's report and return True, or return False to build."""
    report = try_noop(argv)
    if report is None:
        return False
    if "--json" in argv:
        import json

        for record in report["records"]:
            sys.stdout.write(json.dumps(record) + "\n")
    else:
        for line in report["lines"]:
            sys.stderr.write(line + "\n")
    return True
