"""The warm server's stamps (mbuild.warm_stamps): a held stamp marks every
path that may have changed since the stamp was written, whenever and however
it changed, and drops what no watch can vouch for. The child a command is
forked into looks again only at the marked paths, so a path left unmarked
that did change would be a stale answer: these tests make each kind of
change and check it is marked."""

from __future__ import annotations

import marshal
import os
import shutil
import time
from pathlib import Path

import pytest

from mbuild import fastpath, inotify
from mbuild.warm_stamps import WarmStamps, identity


def test_this_system_can_watch():
    """mbuild's machines are Linux: watching is expected to work here, never skipped."""
    assert inotify.available() and WarmStamps.open() is not None


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "ws"
    for rel in ("pkg/a.txt", "pkg/b.txt", "pkg/sub/c.txt", "other/d.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel + "\n")
    return root


@pytest.fixture
def stamps():
    held = WarmStamps.open()
    assert held is not None
    yield held
    held.close()


def write_stamp(path: Path, files: list[Path], dirs: list[Path], facts: dict | None = None) -> str:
    """A stamp of ``files`` and ``dirs`` as they are now (``facts`` overriding some), as fastpath writes one."""
    recorded = {str(p): fastpath.lstat_facts(str(p)) for p in files}
    recorded.update({p: fastpath.lstat_facts(p) for p in fastpath.tool_files()})
    recorded.update(facts or {})
    doc = {"version": fastpath.STAMP_VERSION, "files": recorded,
           "dirs": {str(d): fastpath.lstat_facts(str(d)) for d in dirs}, "listings": {}, "images": {},
           "outputs": {}, "report": {"records": [], "lines": []}}
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(marshal.dumps(doc))
    os.replace(tmp, path)
    return str(path)


def marked(stamps: WarmStamps, stamp: str) -> set[str]:
    held = stamps.snapshot(stamp)
    assert held is not None, "the stamp is not held"
    assert held[0] == identity(stamp)
    return {p for p in held[2] if not p.startswith(os.path.dirname(fastpath.__file__))}


def held_stamp(tmp_path, tree, stamps) -> str:
    stamp = write_stamp(tmp_path / "s.stamp", [tree / "pkg/a.txt", tree / "pkg/b.txt", tree / "pkg/sub/c.txt",
                                                tree / "pkg/missing.txt"], [tree / "pkg", tree / "pkg/sub"])
    stamps.refresh(stamp)
    return stamp


def test_nothing_changed_marks_nothing_but_what_is_missing(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    assert marked(stamps, stamp) == {str(tree / "pkg/missing.txt")}  # absent: looked at every time


def test_an_edit_after_the_stamp_was_read_is_marked(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    with open(tree / "pkg/sub/c.txt", "a") as f:
        f.write("more\n")
    assert str(tree / "pkg/sub/c.txt") in marked(stamps, stamp)
    assert str(tree / "pkg/a.txt") not in marked(stamps, stamp)


def test_an_edit_before_the_stamp_was_read_is_marked(tmp_path, tree, stamps):
    stamp = write_stamp(tmp_path / "s.stamp", [tree / "pkg/a.txt", tree / "pkg/b.txt"], [tree / "pkg"])
    os.utime(tree / "pkg/b.txt", ns=(0, 0))  # not even the size changes
    stamps.refresh(stamp)
    assert marked(stamps, stamp) == {str(tree / "pkg/b.txt")}


def test_a_file_saved_by_renaming_a_new_one_over_it_is_marked(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    (tree / "pkg/.a.txt.swp").write_text("saved\n")
    os.replace(tree / "pkg/.a.txt.swp", tree / "pkg/a.txt")
    assert {str(tree / "pkg/a.txt"), str(tree / "pkg")} <= marked(stamps, stamp)


def test_a_file_appearing_or_going_is_marked_with_its_folder(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    (tree / "pkg/missing.txt").write_text("here now\n")
    (tree / "pkg/b.txt").unlink()
    assert {str(tree / "pkg/missing.txt"), str(tree / "pkg/b.txt"), str(tree / "pkg")} <= marked(stamps, stamp)


def test_a_write_through_a_hard_link_in_an_unwatched_folder_is_marked(tmp_path, tree, stamps):
    """Events of a write reach the watches of the folder it was made through;
    each recorded file's own watch sees writes through any of its links."""
    os.link(tree / "pkg/a.txt", tree / "other/a-link.txt")
    stamp = held_stamp(tmp_path, tree, stamps)
    os.link(tree / "pkg/b.txt", tree / "other/b-link.txt")  # made after the stamp was read
    assert str(tree / "other") not in marked(stamps, stamp)
    for link in ("a-link.txt", "b-link.txt"):
        with open(tree / "other" / link, "a") as f:
            f.write("through the link\n")
    assert {str(tree / "pkg/a.txt"), str(tree / "pkg/b.txt")} <= marked(stamps, stamp)


def test_a_folder_reached_through_a_symlink_is_looked_at_every_time(tmp_path, tree, stamps):
    (tmp_path / "via").symlink_to(tree / "pkg")
    linked = tmp_path / "via" / "a.txt"
    stamp = write_stamp(tmp_path / "s.stamp", [linked, tree / "other/d.txt"], [])
    stamps.refresh(stamp)
    assert marked(stamps, stamp) == {str(linked)}  # retargeting the link would tell its folder's watch nothing


def test_a_watched_folder_removed_or_moved_drops_the_stamp(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    os.rename(tree / "pkg/sub", tree / "other/sub")  # its watch would now name other/sub's entries pkg/sub/...
    assert stamps.snapshot(stamp) is None
    stamps.refresh(stamp)
    assert str(tree / "pkg/sub/c.txt") in marked(stamps, stamp)  # read again: missing now, so looked at
    shutil.rmtree(tree / "pkg")
    assert stamps.snapshot(stamp) is None


def test_an_overflowing_event_queue_drops_the_stamp(tmp_path, tree, stamps):
    stamp = held_stamp(tmp_path, tree, stamps)
    with open("/proc/sys/fs/inotify/max_queued_events") as f:
        limit = int(f.read())
    a, b = open(tree / "pkg/a.txt", "a"), open(tree / "pkg/b.txt", "a")
    with a, b:
        for _ in range(limit):  # alternating, so the kernel cannot merge them
            a.write("x")
            a.flush()
            b.write("y")
            b.flush()
    assert stamps.snapshot(stamp) is None


def test_a_stamp_written_again_keeps_only_what_its_predecessor_vouches_for(tmp_path, tree, stamps):
    """A command rewrites its stamp (the one-change path records the new
    facts of what it rebuilt); the new one is compared afresh only where the
    old one cannot vouch: paths it marked, or recorded otherwise."""
    stamp = held_stamp(tmp_path, tree, stamps)
    with open(tree / "pkg/a.txt", "a") as f:
        f.write("edited\n")
    with open(tree / "pkg/b.txt", "a") as f:
        f.write("edited too\n")
    assert {str(tree / "pkg/a.txt"), str(tree / "pkg/b.txt")} <= marked(stamps, stamp)
    time.sleep(0.01)
    # The new stamp records a.txt's new facts, and b.txt's old ones (as if b's edit came after the build looked).
    old_b = marshal.loads(Path(stamp).read_bytes())["files"][str(tree / "pkg/b.txt")]
    write_stamp(Path(stamp), [tree / "pkg/a.txt", tree / "pkg/b.txt", tree / "pkg/sub/c.txt",
                              tree / "pkg/missing.txt"], [tree / "pkg", tree / "pkg/sub"],
                facts={str(tree / "pkg/b.txt"): old_b})
    stamps.refresh(stamp)
    assert marked(stamps, stamp) == {str(tree / "pkg/b.txt"), str(tree / "pkg/missing.txt")}


def test_the_commands_process_uses_a_held_stamp_only_while_it_is_the_file(tmp_path, tree, stamps, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    argv, cwd = ["build", "//pkg:a"], str(tree)
    path = Path(fastpath.stamp_path(argv, cwd))
    path.parent.mkdir(parents=True)
    write_stamp(path, [tree / "pkg/a.txt"], [])
    stamps.refresh(str(path))
    held = stamps.snapshot(str(path))
    fake = dict(held[1], report="held")
    monkeypatch.setattr(fastpath, "warm", {str(path): (held[0], fake, frozenset())})
    assert fastpath._stamp(argv, cwd)[0]["report"] == "held"
    write_stamp(path, [tree / "pkg/a.txt"], [])  # another command wrote it since
    assert fastpath._stamp(argv, cwd)[0]["report"] == {"records": [], "lines": []}


def test_the_stamp_of_a_request_is_found_with_the_requests_environment(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path / "elsewhere"), "DOCKER_HOST": "unix:///x.sock"}
    path = fastpath.stamp_path(["build", "//a:b"], "/w", env)
    assert path.startswith(str(tmp_path / "elsewhere"))
    assert path != fastpath.stamp_path(["build", "//a:b"], "/w", {**env, "DOCKER_HOST": ""})


def test_a_folder_moved_away_and_made_again_is_watched_anew(tmp_path, tree, stamps):
    """The old watch follows the folder to its new name; the new folder at
    the old path must get a watch of its own once the stamp is read again."""
    stamp = held_stamp(tmp_path, tree, stamps)
    os.rename(tree / "pkg", tree / "pkg.old")
    shutil.copytree(tree / "pkg.old", tree / "pkg")
    assert stamps.snapshot(stamp) is None
    time.sleep(0.01)
    stamp = held_stamp(tmp_path, tree, stamps)  # the rebuild's new stamp
    (tree / "pkg" / "new.txt").write_text("a glob would see this\n")
    (tree / "pkg.old" / "a.txt").write_text("the old copy: nobody's business\n")
    assert marked(stamps, stamp) >= {str(tree / "pkg")}
    assert str(tree / "pkg/a.txt") not in marked(stamps, stamp)


def test_a_folder_above_renamed_drops_the_stamp(tmp_path, tree, stamps):
    """No recorded file is directly in ws/, yet renaming it takes every path below along."""
    (tree / "deep" / "web").mkdir(parents=True)
    (tree / "deep" / "web" / "a.txt").write_text("a\n")
    stamp = write_stamp(tmp_path / "s.stamp", [tree / "deep/web/a.txt"], [tree / "deep/web"])
    stamps.refresh(stamp)
    assert marked(stamps, stamp) == set()
    os.rename(tree / "deep", tree / "deep.old")
    shutil.copytree(tree / "deep.old", tree / "deep")
    assert stamps.snapshot(stamp) is None


def test_hard_links_recorded_by_two_stamps_are_both_marked(tmp_path, tree, stamps):
    """One inode has one watch descriptor: a write through a third link marks every path it is recorded as."""
    os.link(tree / "pkg/a.txt", tree / "other/b.txt")
    os.link(tree / "pkg/a.txt", tmp_path / "c.txt")
    one = write_stamp(tmp_path / "one.stamp", [tree / "pkg/a.txt"], [])
    two = write_stamp(tmp_path / "two.stamp", [tree / "other/b.txt"], [])
    stamps.refresh(one)
    stamps.refresh(two)
    with open(tmp_path / "c.txt", "a") as f:
        f.write("through the third link\n")
    assert marked(stamps, one) == {str(tree / "pkg/a.txt")}
    assert marked(stamps, two) == {str(tree / "other/b.txt")}


def test_a_command_right_after_the_last_waits_for_its_stamp(tmp_path, tree, stamps):
    """The server says a stamp is being read before it answers the command
    that wrote it: the next command's snapshot waits and gets the new one."""
    import threading

    stamp = held_stamp(tmp_path, tree, stamps)
    stamps.expect(stamp)
    time.sleep(0.01)
    write_stamp(Path(stamp), [tree / "pkg/a.txt"], [])
    threading.Timer(0.1, stamps.refresh, args=(stamp,)).start()
    held = stamps.snapshot(stamp)
    assert held is not None and held[0] == identity(stamp)


def test_a_folder_replaced_while_its_stamp_is_read_is_not_vouched_for(tmp_path, tree, stamps, monkeypatch):
    """Replaced between the read's drain and its watches: the old watch's
    events may still be queued, so the new inode is no reason to trust the path."""
    from mbuild import warm_stamps

    (tree / "tool").mkdir()
    (tree / "tool" / "a.txt").write_text("a\n")
    files = [tree / "tool/a.txt"]
    stamp = write_stamp(tmp_path / "s.stamp", files, [tree])  # tool/ is no glob folder: only its file is recorded
    stamps.refresh(stamp)
    time.sleep(0.01)
    write_stamp(Path(stamp), files, [tree])  # the next command wrote it again, the same facts
    real, done = stamps._watch, []

    def replacing_first(paths, what):
        if what == warm_stamps.FOLDER and not done:
            done.append(True)
            os.rename(tree / "tool", tree / "tool.old")
            shutil.copytree(tree / "tool.old", tree / "tool")
        return real(paths, what)

    monkeypatch.setattr(stamps, "_watch", replacing_first)
    stamps.refresh(stamp)
    held = stamps.snapshot(stamp)
    if held is not None:  # held again: then the replaced file must be looked at
        assert str(tree / "tool/a.txt") in held[2] or fastpath.lstat_facts(str(tree / "tool/a.txt")) == \
            held[1]["files"][str(tree / "tool/a.txt")]
