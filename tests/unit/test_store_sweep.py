"""What killed processes leave in the local store: temporaries swept by the
next process alone with the store (never while another uses it), and the
store verifier that the fault suite scans with."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from mbuild.cache.store import ActionRecord, LocalStore


def record(key: str, **kw) -> ActionRecord:
    return ActionRecord(key=key, label="//p:t", kind="k", inputs={"x": 1}, created=1.0, **kw)


LOCK = "locks/" + "cd" * 32 + ".lock"


def plant_leftovers(root: Path) -> set[str]:
    """One temporary of every kind a killed writer leaves, and a lock file;
    their relative paths (a top-level folder's, not its files')."""
    sha = hashlib.sha256(b"blob").hexdigest()
    made = {
        f"ac/ab/.{'ab' * 32}.json.k2j4x": b'{"record": {"ke',  # atomicfile.write_bytes
        f"cas/{sha[:2]}/.tmp-q8z1": b"half a co",  # put_blob_file, oci ingest
        f"cas/{sha[:2]}/.{sha}.w81n.part": b"half a downl",  # a remote blob being received
        "last/.0123.json.a1b2": b"{",
        ".remote-3fk2/" + sha: b"a staged blob",  # a remote result being checked
        ".restore-9xk1.tar": b"an archive for docker load",
        ".export-p2m8/image.tar": b"half an OCI archive",  # any top-level dot name is a temporary
        LOCK: b"",
    }
    for rel, data in made.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return {rel.partition("/")[0] if rel.startswith(".") else rel for rel in made}


def holder(root: Path) -> subprocess.Popen:
    """Another process using the store until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from mbuild.cache.store import LocalStore
        store = LocalStore({str(root)!r})
        store.use()
        print("using", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "using"
    return proc


def entries(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_the_next_process_alone_sweeps_what_a_killed_one_left(tmp_path):
    store = LocalStore(tmp_path)
    sha = store.put_blob_bytes(b"content")
    store.put(record("a" * 64, files={"out/f": sha}), "ws")
    store.close()
    kept = entries(tmp_path)
    kill(holder(tmp_path))  # as if killed while writing these:
    planted = plant_leftovers(tmp_path)
    problems = LocalStore(tmp_path).verify()
    assert sorted(problems) == sorted(f"{p}: temporary (half written)" for p in planted - {LOCK})

    again = LocalStore(tmp_path)
    assert again.get("a" * 64).files == {"out/f": sha}  # reading sweeps nothing ...
    assert LocalStore(tmp_path).verify() == problems
    again.put(record("b" * 64), "ws")  # ... writing first does
    assert not any((tmp_path / p).exists() for p in planted)
    assert entries(tmp_path) - kept == {f"ac/bb/{'b' * 64}.json", f"users/{again._session.name}"}
    assert again.verify(complete=True) == []
    again.close()
    assert entries(tmp_path) == kept | {f"ac/bb/{'b' * 64}.json"}  # leaving ends its session


def test_temporaries_stay_while_another_process_uses_the_store_and_go_once_it_was_killed(tmp_path):
    other = holder(tmp_path)
    try:
        planted = plant_leftovers(tmp_path)
        mine = LocalStore(tmp_path)
        mine.put(record("e" * 64), "ws")  # used while `other` may be writing: nothing of its goes
        assert all((tmp_path / p).exists() for p in planted)
        assert mine.clean() > 0  # the entries go, with what was being written among them ...
        assert {p for p in planted if (tmp_path / p).exists()} == {p for p in planted if p[0] == "." or p == LOCK}
        mine.close()  # ... but not other's staged downloads, archives and key locks
    finally:
        kill(other)
    store = LocalStore(tmp_path)
    store.use()  # alone now: the kernel released the dead process's lock; its session file tells
    assert not any((tmp_path / p).exists() for p in planted)
    assert store.verify() == []
    assert os.listdir(tmp_path / "users") == [store._session.name]


def test_a_store_no_process_died_in_is_not_scanned(tmp_path):
    first = LocalStore(tmp_path)
    first.put_blob_bytes(b"x")  # a new store is swept (it may be older than session files): nothing there
    first.close()
    assert os.listdir(tmp_path / "users") == []
    stray = tmp_path / "cas" / "00" / ".tmp-not-of-a-dead-process"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"")
    LocalStore(tmp_path).put_blob_bytes(b"y")
    assert stray.exists()
    assert LocalStore(tmp_path).verify() == [f"cas/00/{stray.name}: temporary (half written)"]


def test_a_store_older_than_session_files_is_swept_once(tmp_path):
    planted = plant_leftovers(tmp_path)
    LocalStore(tmp_path).use()
    assert not any((tmp_path / p).exists() for p in planted)


def test_clean_removes_temporaries_too_when_alone(tmp_path):
    store = LocalStore(tmp_path)
    store.put_blob_bytes(b"x" * 100)
    planted = plant_leftovers(tmp_path)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store.stat_cache_path}{suffix}").write_bytes(b"db")
    assert store.clean() > 0
    assert sorted(os.listdir(tmp_path)) == ["locks", "users"] and os.listdir(tmp_path / "locks") == []
    assert os.listdir(tmp_path / "users") == [store._session.name]
    assert not any((tmp_path / p).exists() for p in planted)


def test_eviction_never_takes_a_temporary(tmp_path):
    store = LocalStore(tmp_path)
    store.put_blob_bytes(b"y" * 1000)
    store.close()
    temp = tmp_path / "cas" / "00" / ".tmp-being-written"
    temp.parent.mkdir(parents=True)
    temp.write_bytes(b"z" * 5000)
    assert LocalStore(tmp_path).size() == 1000
    store = LocalStore(tmp_path, max_size=0)
    store.evict()
    assert temp.exists() and not list((tmp_path / "cas").glob("*/[!.]*"))


def test_the_verifier_names_every_bad_entry(tmp_path):
    store = LocalStore(tmp_path)
    good = store.put_blob_bytes(b"good")
    lost = hashlib.sha256(b"lost").hexdigest()
    store.put(record("1" * 64, files={"f": good}), "ws")
    store.put(record("2" * 64, files={"f": lost}), "ws")  # its blob was never stored
    store.put(record("3" * 64, blobs=({"digest": "sha256:" + good, "size": 4, "mediaType": "m"},)), "ws")
    assert store.verify() == []
    assert store.verify(complete=True) == [f"ac/22/{'2' * 64}.json: lacks blob {lost} (a file)"]

    ac = tmp_path / "ac"
    (ac / "44").mkdir()
    (ac / "44" / f"{'4' * 64}.json").write_bytes(b'{"record": {"key": "44')  # cut short
    tampered = ac / "11" / f"{'1' * 64}.json"
    tampered.write_bytes(tampered.read_bytes().replace(b'"kind":"k"', b'"kind":"z"'))
    (ac / "55").mkdir()
    (ac / "55" / f"{'5' * 64}.json").write_bytes((ac / "33" / f"{'3' * 64}.json").read_bytes())  # another's
    body = record("6" * 64, files={"f": "../../etc/passwd"}).to_json()
    (ac / "66").mkdir()
    (ac / "66" / f"{'6' * 64}.json").write_text(json.dumps(
        {"record": body, "sha256": hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                                                  .encode()).hexdigest()}))
    store.blob_path(good).write_bytes(b"evil")
    misplaced = tmp_path / "cas" / "ff" / good
    misplaced.parent.mkdir()
    misplaced.write_bytes(b"good")
    (tmp_path / "last" / "x.json").write_text("[]")
    assert store.verify() == [
        f"ac/11/{'1' * 64}.json: checksum mismatch",
        f"ac/44/{'4' * 64}.json: does not parse (JSONDecodeError)",
        f"ac/55/{'5' * 64}.json: record of key {'3' * 64!r} filed here",
        f"ac/66/{'6' * 64}.json: names a blob by a bad digest ('../../etc/passwd')",
        f"cas/{good[:2]}/{good}: content does not match its name",
        f"cas/ff/{good}: blob in the wrong shard",
        "last/x.json: not a last-build pointer",
    ]
