"""FileOp: action chaining and indexes, paths, owners, modes, caps."""

from __future__ import annotations

import datetime as dt

import pytest

from buildkit import llb
from buildkit.proto import ops_pb2

P = "linux/amd64"


def file_ops(definition: llb.Definition) -> list[ops_pb2.Op]:
    return [o for o in definition.ops() if o.WhichOneof("op") == "file"]


def test_consecutive_actions_chain_into_one_fileop():
    base = llb.image("alpine", platform=P)
    ctx = llb.local("context")
    st = (base.mkdir("/app", parents=True)
              .mkfile("/app/a.txt", b"a")
              .copy(ctx, "src", "/app/src/")
              .rm("/app/tmp", allow_not_found=True)
              .symlink("a.txt", "/app/b.txt"))
    d = st.marshal()
    (op,) = file_ops(d)
    assert [i.digest for i in op.inputs] == [base.digest, ctx.digest]
    acts = op.file.actions
    assert [a.WhichOneof("action") for a in acts] == ["mkdir", "mkfile", "copy", "rm", "symlink"]
    n = len(op.inputs)
    # action 0 reads input 0; action j reads the result of action j-1 (index n + j - 1)
    assert [a.input for a in acts] == [0, n + 0, n + 1, n + 2, n + 3]
    assert [a.secondaryInput for a in acts] == [-1, -1, 1, -1, -1]
    assert [a.output for a in acts] == [-1, -1, -1, -1, 0]  # only the last is exported
    assert len(d.defs) == 4  # image, local, one file op, terminal


def test_chain_breaks_on_a_different_name_or_a_run():
    base = llb.image("alpine", platform=P)
    st = base.mkdir("/a", name="one").mkdir("/b", name="two")
    assert len(file_ops(st.marshal())) == 2
    st = base.mkdir("/a", name="same").mkdir("/b", name="same")
    assert len(file_ops(st.marshal())) == 1
    st = base.mkdir("/a").run(["true"]).mkdir("/b")
    assert len(file_ops(st.marshal())) == 2


def test_intermediate_states_stay_valid_after_chaining():
    base = llb.image("alpine", platform=P)
    a = base.mkdir("/a")
    b = a.mkdir("/b")
    assert len(file_ops(a.marshal())[0].file.actions) == 1
    assert len(file_ops(b.marshal())[0].file.actions) == 2
    # both used in one graph: each is its own op
    m = llb.merge([a, b])
    assert len(file_ops(m.marshal())) == 2


def test_copy_from_the_state_itself_is_not_chained():
    st = llb.scratch(platform=P).mkfile("/a", b"x")
    st2 = st.copy(st, "/a", "/b")
    ops = file_ops(st2.marshal())
    assert len(ops) == 2
    copy_op = [o for o in ops if o.file.actions[0].WhichOneof("action") == "copy"][0]
    assert copy_op.file.actions[0].input == 0 and copy_op.file.actions[0].secondaryInput == 0


def test_scratch_base_is_input_minus_one():
    st = llb.scratch(platform=P).copy(llb.image("alpine", platform=P), "/etc/os-release", "/")
    (op,) = file_ops(st.marshal())
    a = op.file.actions[0]
    assert (a.input, a.secondaryInput, a.output) == (-1, 0, 0)


def test_paths_resolve_against_workdirs():
    src = llb.image("alpine", platform=P).with_workdir("/src")
    st = llb.image("busybox", platform=P).with_workdir("/app")
    st = (st.mkdir("data").mkfile("./data/f", b"").rm("../tmp/x").symlink("rel/target", "link")
            .copy(src, "lib/", "out/").copy(src, "/abs", "./").copy(src, ".", "dir/.")
            .copy(src, "a//b/../c", "d"))
    acts = file_ops(st.marshal())[0].file.actions
    assert acts[0].mkdir.path == "/app/data"
    assert acts[1].mkfile.path == "/app/data/f"
    assert acts[2].rm.path == "/tmp/x"
    assert (acts[3].symlink.oldpath, acts[3].symlink.newpath) == ("rel/target", "/app/link")
    assert (acts[4].copy.src, acts[4].copy.dest) == ("/src/lib", "/app/out/")  # dest keeps its slash
    assert (acts[5].copy.src, acts[5].copy.dest) == ("/abs", "/app/")
    assert (acts[6].copy.src, acts[6].copy.dest) == ("/src", "/app/dir/.")
    assert (acts[7].copy.src, acts[7].copy.dest) == ("/src/a/c", "/app/d")


def test_copy_defaults_like_dockerfile_copy():
    st = llb.scratch(platform=P).copy(llb.local("context"), "/", "/app/")
    c = file_ops(st.marshal())[0].file.actions[0].copy
    assert (c.src, c.dest) == ("/", "/app/")
    assert c.dirCopyContents and c.createDestPath and c.allowWildcard and c.allowEmptyWildcard
    assert c.followSymlink
    assert c.mode == -1 and c.timestamp == -1  # -1 keeps; 0 would mean mode 0 / the epoch
    assert not c.HasField("owner")


def test_modes_timestamps_and_patterns():
    ts = dt.datetime(2024, 1, 2, 3, 4, 5, 6000, tzinfo=dt.timezone.utc)
    st = (llb.scratch(platform=P)
          .mkdir("/d", mode=0o700, timestamp=ts)
          .mkfile("/d/f", "text", mode=0o600)
          .copy(llb.local("c"), "/", "/d/", mode=0o644, include=["*.py"], exclude=["tests/"],
                timestamp=0))
    d = st.marshal()
    acts = file_ops(d)[0].file.actions
    assert acts[0].mkdir.mode == 0o700
    assert acts[0].mkdir.timestamp == int(ts.timestamp()) * 10**9 + 6_000_000
    assert acts[1].mkfile.data == b"text" and acts[1].mkfile.mode == 0o600
    assert acts[1].mkfile.timestamp == -1
    assert acts[2].copy.mode == 0o644 and acts[2].copy.timestamp == 0
    assert list(acts[2].copy.include_patterns) == ["*.py"]
    assert list(acts[2].copy.exclude_patterns) == ["tests/"]
    assert "file.copy.includeexcludepatterns" in d.caps
    assert "file.base" in d.caps


@pytest.mark.parametrize("spec, user, group", [
    ("1000:1000", ("byID", 1000), ("byID", 1000)),
    ((1000, 2000), ("byID", 1000), ("byID", 2000)),
    ("root:0", ("byID", 0), ("byID", 0)),
    ("node:node", ("byName", "node"), ("byName", "node")),
    ("node", ("byName", "node"), None),
    ("1000:staff", ("byID", 1000), ("byName", "staff")),
])
def test_owners(spec, user, group):
    base = llb.image("node", platform=P)
    st = base.mkdir("/x").copy(llb.local("c"), "/", "/app/", owner=spec)
    ops = file_ops(st.marshal())
    op = ops[-1]
    action = op.file.actions[-1]
    owner = action.copy.owner

    def read(u):
        kind = u.WhichOneof("user")
        if kind is None:
            return None
        if kind == "byID":
            return ("byID", u.byID)
        return ("byName", u.byName.name)

    assert read(owner.user) == user
    assert read(owner.group) == group
    if isinstance(spec, str) and any(not p.isdigit() and p != "root" for p in spec.split(":")):
        # a named owner starts its own FileOp so the lookup input is the state it lands on
        assert len(ops) == 2
        assert op.inputs[0].digest == base.mkdir("/x").digest
        for u in (owner.user, owner.group):
            if u.WhichOneof("user") == "byName":
                assert u.byName.input == 0
    else:
        assert len(ops) == 1


def test_uid_zero_is_written_explicitly():
    st = llb.scratch(platform=P).mkdir("/x", owner=(0, 0))
    owner = file_ops(st.marshal())[0].file.actions[0].mkdir.owner
    assert owner.user.WhichOneof("user") == "byID" and owner.user.byID == 0
    # ChownOpt{user{byID:0} group{byID:0}}: 0a 02 10 00 12 02 10 00
    assert owner.SerializeToString(deterministic=True) == bytes.fromhex("0a021000" "12021000")


def test_named_owner_on_scratch_is_an_error():
    with pytest.raises(llb.LLBError, match="scratch"):
        llb.scratch().copy(llb.local("c"), "/", "/", owner="node")


def test_rm_wildcard_and_symlink_caps():
    d = llb.scratch(platform=P).rm("/x*", allow_wildcard=True).symlink("a", "/b").marshal()
    assert {"file.rm.wildcard", "file.symlink.create"} <= d.caps


@pytest.mark.parametrize("call", [
    lambda s: s.mkdir(""),
    lambda s: s.mkdir("/x", mode=0o10000),
    lambda s: s.copy(s, "", "/x"),
    lambda s: s.copy(s, "/a", "/b", include="*.py"),
    lambda s: s.copy(s, "/a", "/b", owner=["a"]),
    lambda s: s.mkdir("/x", timestamp=dt.datetime(2024, 1, 1)),
])
def test_invalid_actions(call):
    with pytest.raises(llb.LLBError):
        call(llb.image("alpine"))


def test_file_with_action_objects():
    st = llb.scratch(platform=P).file(llb.mkdir("/a")).file(llb.mkfile("/a/b", b"1"))
    (op,) = file_ops(st.marshal())
    assert [a.WhichOneof("action") for a in op.file.actions] == ["mkdir", "mkfile"]
