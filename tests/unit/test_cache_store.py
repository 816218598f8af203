"""The stat cache and the local action store, on real files."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time

from mbuild.cache.digests import RACY_MARGIN_NS, StatCache, hash_file
from mbuild.cache.keys import KeyInputs, diff_inputs
from mbuild.cache.store import ActionRecord, LocalStore


def test_stat_cache_digests_and_rereads_only_changed_files(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "b.sh").write_text("#!/bin/sh\n")
    (tmp_path / "b.sh").chmod(0o755)
    os.symlink("a.txt", tmp_path / "link")
    old = time.time_ns() - 10 * RACY_MARGIN_NS
    for name in ("a.txt", "b.sh"):
        os.utime(tmp_path / name, ns=(old, old))
    cache = StatCache(tmp_path / "db.sqlite")
    first = cache.digest_files(tmp_path, ["a.txt", "b.sh", "link"])
    assert first["a.txt"].sha256 == hashlib.sha256(b"one").hexdigest()
    assert first["b.sh"].executable and not first["a.txt"].executable
    assert first["link"].symlink and first["link"].key_part().startswith("l:")

    calls = []
    import mbuild.cache.digests as digests

    monkeypatch.setattr(digests, "hash_file", lambda p: calls.append(p) or hash_file(p))
    again = StatCache(tmp_path / "db.sqlite").digest_files(tmp_path, ["a.txt", "b.sh"])
    assert again == {k: v for k, v in first.items() if k != "link"}
    assert calls == []  # nothing reread: stat facts unchanged and old enough


def test_stat_cache_sees_a_same_size_change_within_the_same_second(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("aaaa")
    st = f.stat()
    cache = StatCache(tmp_path / "db.sqlite")
    assert cache.digest_files(tmp_path, ["f.txt"])["f.txt"].sha256 == hashlib.sha256(b"aaaa").hexdigest()
    f.write_text("bbbb")  # same size...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the very same mtime
    assert cache.digest_files(tmp_path, ["f.txt"])["f.txt"].sha256 == hashlib.sha256(b"bbbb").hexdigest()


def test_racily_clean_entries_are_rehashed(tmp_path, monkeypatch):
    f = tmp_path / "f.txt"
    f.write_text("x")
    cache = StatCache(tmp_path / "db.sqlite")
    cache.digest_files(tmp_path, ["f.txt"])
    calls = []
    import mbuild.cache.digests as digests

    monkeypatch.setattr(digests, "hash_file", lambda p: calls.append(p) or hash_file(p))
    cache.digest_files(tmp_path, ["f.txt"])
    assert calls, "a file modified within the margin of its recording must be rehashed"


def test_broken_stat_cache_file_means_no_cache(tmp_path):
    db = tmp_path / "db.sqlite"
    db.write_bytes(b"not a database" * 100)
    (tmp_path / "a").write_text("a")
    assert StatCache(db).digest_files(tmp_path, ["a"])["a"].sha256 == hashlib.sha256(b"a").hexdigest()


def record(key: str, **kw) -> ActionRecord:
    return ActionRecord(key=key, label="//p:t", kind="k", inputs={"x": 1}, created=1.0, **kw)


def test_store_round_trip_and_corruption_is_a_miss(tmp_path):
    store = LocalStore(tmp_path)
    sha = store.put_blob_bytes(b"content")
    store.put(record("a" * 64, files={"out/f": sha}), "ws")
    assert store.get("a" * 64).files == {"out/f": sha}
    assert store.last("ws", "//p:t").key == "a" * 64
    entry = next((tmp_path / "ac").rglob("*.json"))
    entry.write_bytes(entry.read_bytes()[:-10])
    assert store.get("a" * 64) is None
    assert not entry.exists()  # removed, rewritten by the next build


def test_store_tampered_record_and_missing_blob_are_misses(tmp_path):
    store = LocalStore(tmp_path)
    sha = store.put_blob_bytes(b"content")
    store.put(record("b" * 64, files={"f": sha}), "ws")
    entry = next((tmp_path / "ac").rglob("*.json"))
    entry.write_bytes(entry.read_bytes().replace(b'"kind":"k"', b'"kind":"z"'))
    assert store.get("b" * 64) is None
    store.put(record("b" * 64, files={"f": sha}), "ws")
    store.blob_path(sha).write_bytes(b"tampered")
    assert store.read_blob(sha) is None and not store.blob_path(sha).exists()
    assert store.get("b" * 64) is None


def test_lru_eviction_keeps_recently_used_entries(tmp_path):
    store = LocalStore(tmp_path)
    shas = [store.put_blob_bytes(bytes([i]) * 1000) for i in range(5)]
    for i, sha in enumerate(shas):
        t = 1_000_000 + i
        os.utime(store.blob_path(sha), (t, t))
    os.utime(store.blob_path(shas[0]), None)  # used just now
    assert store.evict(2500) == 3000  # oldest first, until at most 2,500 bytes remain
    assert [store.has_blob(s) for s in shas] == [True, False, False, False, True]
    assert store.clean() > 0 and not any(store.has_blob(s) for s in shas)


def test_lock_serialises_two_builders_of_one_key(tmp_path):
    store = LocalStore(tmp_path)
    order = []

    def builder(name: str) -> None:
        with store.lock("c" * 64):
            order.append(f"{name} in")
            time.sleep(0.2)
            order.append(f"{name} out")

    threads = [threading.Thread(target=builder, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order[0].endswith("in") and order[1].endswith("out") and order[2].endswith("in")


def test_key_documents_and_their_differences():
    a = KeyInputs({"sources": {"x": "f:1"}, "rule": "r"})
    b = KeyInputs({"sources": {"x": "f:2", "y": "f:3"}, "rule": "r"})
    assert a.key != b.key and len(a.key) == 64
    assert KeyInputs(dict(a.doc)).key == a.key
    assert diff_inputs(a.doc, b.doc) == ["sources: x changed (f:1 -> f:2)", "sources: added y"]


def test_explain_rendering_is_json_with_indent_2():
    from mbuild.cache.keys import render

    docs = [
        {},
        {"a": {}, "b": []},
        {"sources": {f"p/{i}.py": f"f:{i:064x}" for i in range(50)}, "deps": {"//a:b": "0" * 64},
         "attrs": {"srcs": ["a", "b"], "env": {"A": "é\"\n"}, "n": None}, "schema": 3, "flag": True,
         "nested": {"x": {"y": [1, {"z": 1.5}]}}},
        {True: 1, False: {"b": None}},
        {1: {2: "x"}},
    ]
    for doc in docs:
        assert render(doc) == json.dumps(doc, indent=2, sort_keys=True)


def test_stat_cache_of_the_first_layout_is_replaced(tmp_path):
    import sqlite3

    db = tmp_path / "db.sqlite"
    old = sqlite3.connect(db)
    old.execute("CREATE TABLE stat (path TEXT PRIMARY KEY, size INTEGER, mtime INTEGER, ctime INTEGER,"
                " ino INTEGER, mode INTEGER, digest TEXT, recorded INTEGER)")
    old.execute("INSERT INTO stat VALUES (?,?,?,?,?,?,?,?)", (str(tmp_path / "a"), 1, 1, 1, 1, 0o100644, "0" * 64, 1))
    old.commit()
    old.close()
    (tmp_path / "a").write_text("a")
    old_ns = time.time_ns() - 10 * RACY_MARGIN_NS
    os.utime(tmp_path / "a", ns=(old_ns, old_ns))
    cache = StatCache(db)
    assert cache.digest_files(tmp_path, ["a"])["a"].sha256 == hashlib.sha256(b"a").hexdigest()
    cache.close()
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"files"}
