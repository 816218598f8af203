"""Marshalling: deterministic bytes, pinned digests, the terminal op, caps,
sources, merge/diff, and speed on large graphs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from buildkit import llb
from buildkit.proto import ops_pb2

P = "linux/amd64"


def sample_graph() -> llb.State:
    """A graph touching every kind of op, with a shared sub-graph."""
    base = llb.image("python:3.11-slim", platform=P,
                     config={"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["python3"]})
    ctx = llb.local("context", include=["src/", "pyproject.toml"], exclude=["*.pyc"],
                    shared_key_hint="demo")
    deps = base.with_workdir("/app").copy(ctx, "pyproject.toml", "./").run(
        "pip install .", mounts=[llb.cache("/root/.cache/pip", "pip")], name="pip install").root()
    app = deps.copy(ctx, "src/", "/app/src/", owner="1000:1000").with_user("1000")
    layer = llb.diff(base, app)
    both = llb.merge([base, layer, llb.scratch().mkfile("/VERSION", b"1\n")])
    return both.with_cmd(["python", "-m", "demo"])


def test_same_graph_twice_gives_identical_bytes():
    a, b = sample_graph().marshal(), sample_graph().marshal()
    assert a.serialize() == b.serialize()
    assert a.digests == b.digests
    g = sample_graph()
    assert g.marshal().serialize() == g.marshal().serialize()  # memoised path


DETERMINISM_SCRIPT = textwrap.dedent("""
    import sys, hashlib
    sys.path.insert(0, {tests!r})
    from test_llb_marshal import sample_graph
    d = sample_graph().marshal()
    print(hashlib.sha256(d.serialize()).hexdigest())
    print(",".join(d.digests))
""")


def test_bytes_do_not_depend_on_hash_seed():
    here = hashlib.sha256(sample_graph().marshal().serialize()).hexdigest()
    script = DETERMINISM_SCRIPT.format(tests=str(Path(__file__).resolve().parent))
    outs = []
    for seed in ("1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                           timeout=120, cwd=str(Path(__file__).resolve().parent.parent.parent))
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.splitlines())
    assert outs[0] == outs[1]
    assert outs[0][0] == here
    assert outs[0][1] == ",".join(sample_graph().marshal().digests)


# Pinned digests. These are wire facts: if one changes, the bytes the client sends
# to BuildKit changed (field layout, defaults, ordering…). That is only OK on
# purpose, and then the new value is pasted here.
PINNED = {
    "image": ("sha256:d21afdbbb32f0bc0381a3c2678070b3a2efb0cb6881a8ac0ecb3471df423cb84",
              lambda: llb.image("alpine:3.20", platform=P)),
    "local": ("sha256:836589f86c7871b4649ab9b3e6121963abd98dfc849489e84681bac9af148eb5",
              lambda: llb.local("context", exclude=["*.env"])),
    "run": ("sha256:5ecc8f40f4db89b56606602414ebed6145994afa48a9d164356304185eff5ca0",
            lambda: llb.image("alpine:3.20", platform=P).run("echo hi > /x", name="hi")),
    "file": ("sha256:353cac3029cdeca59d7db520ce2f7c8764362825d6fc1c4c89fda166423548c9",
             lambda: llb.scratch().mkdir("/app", parents=True).mkfile("/app/a.txt", b"hello\n", owner=(0, 0))),
    "copy": ("sha256:5f30be6a6a6ee00d082fadf8eb7ebcd72a36cbcad9009f7a4b806bd8a39348aa",
             lambda: llb.scratch().copy(llb.local("context"), ".", "/app/")),
}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_digests(name):
    want, make = PINNED[name]
    d = make().marshal()
    assert d.head_digest == want, f"{name}: the wire changed (got {d.head_digest})"


def test_image_source_bytes():
    # Op{source{identifier}, platform{amd64, linux}, constraints{}}: field-number order,
    # the empty WorkerConstraints written as 5a 00 like Go's client.
    d = llb.image("alpine:3.20", platform=P).marshal()
    ident = b"docker-image://docker.io/library/alpine:3.20"
    want = (b"\x1a" + bytes([len(ident) + 2]) + b"\x0a" + bytes([len(ident)]) + ident
            + b"\x52\x0e\x0a\x05amd64\x12\x05linux" + b"\x5a\x00")
    assert d.defs[0] == want


def test_terminal_op_is_last_and_alone():
    d = sample_graph().marshal()
    assert len(d.defs) >= 2
    ops = d.ops()
    terminal = ops[-1]
    assert terminal.WhichOneof("op") is None
    assert not terminal.HasField("platform") and not terminal.HasField("constraints")
    assert len(terminal.inputs) == 1
    assert terminal.inputs[0].digest == d.head_digest == sample_graph().digest
    assert d.terminal_digest == d.digests[-1]
    for op in ops[:-1]:
        assert op.HasField("constraints")
    # every input refers to an op listed before it
    seen = set()
    for dgst, op in zip(d.digests, ops):
        for inp in op.inputs:
            assert inp.digest in seen
        seen.add(dgst)
    # each op once, and every op has a metadata entry
    assert len(set(d.digests)) == len(d.digests)
    assert set(d.to_pb().metadata) == set(d.digests)


def test_shared_subgraph_appears_once():
    base = llb.image("alpine", platform=P)
    a = base.run(["sh", "-c", "touch /a"]).root()
    b = base.run(["sh", "-c", "touch /b"]).root()
    twice = llb.image("alpine", platform=P)  # a different State object, same op
    m = llb.merge([a, b, twice.run(["sh", "-c", "touch /a"]).root()])
    d = m.marshal()
    sources = [o for o in d.ops() if o.WhichOneof("op") == "source"]
    assert len(sources) == 1
    assert len(d.defs) == 1 + 2 + 1 + 1  # image, two distinct runs, merge, terminal
    merge_op = d.ops()[-2]
    # merge inputs are listed bottom to top, one input per layer (no dedupe, like Go)
    assert [i.input for i in merge_op.merge.inputs] == [0, 1, 2]
    assert merge_op.inputs[0].digest == merge_op.inputs[2].digest


def test_merge_and_diff_shapes():
    base = llb.image("alpine", platform=P)
    up = base.mkdir("/x")
    assert llb.merge([llb.scratch(), base]) == base  # scratch dropped, single input returned
    assert llb.merge([]).is_scratch
    assert llb.diff(llb.scratch(), up) == up
    d = llb.diff(base, up).marshal()
    op = d.ops()[-2]
    assert (op.diff.lower.input, op.diff.upper.input) == (0, 1)
    assert "diffop" in d.caps and not op.HasField("platform")
    d2 = llb.diff(base, llb.scratch()).marshal()
    op2 = d2.ops()[-2]
    assert (op2.diff.lower.input, op2.diff.upper.input) == (0, -1)
    # lower{input:0} is still written: 0a 00
    assert op2.diff.SerializeToString(deterministic=True).startswith(b"\x0a\x00")
    m = llb.merge([base, up]).marshal()
    assert "mergeop" in m.caps and not m.ops()[-2].HasField("platform")


def test_caps_collected_per_op_and_on_terminal():
    d = sample_graph().marshal()
    md = d.to_pb().metadata
    terminal_caps = set(md[d.terminal_digest].caps)
    assert {"constraints", "platform", "meta.description"} <= terminal_caps
    by_kind = {}
    for dgst, op in zip(d.digests, d.ops()):
        by_kind.setdefault(op.WhichOneof("op"), set()).update(md[dgst].caps)
    assert {"source.image", "source.local", "source.local.includepatterns",
            "source.local.excludepatterns", "source.local.sharedkeyhint"} <= by_kind["source"]
    assert {"exec.meta.base", "exec.mount.bind", "exec.mount.cache", "exec.mount.cache.sharing"} \
        <= by_kind["exec"]
    assert by_kind["file"] == {"file.base"}
    assert by_kind["merge"] == {"mergeop"} and by_kind["diff"] == {"diffop"}
    assert d.caps == llb.required_caps(d) == llb.required_caps(d.to_pb())


def test_check_caps_lists_what_is_missing():
    d = sample_graph().marshal()
    assert llb.check_caps(d, d.caps) == []
    old = set(d.caps) - {"mergeop", "diffop"}
    assert llb.check_caps(d, old) == ["diffop", "mergeop"]
    msg = llb.describe_missing(["mergeop"])
    assert "mergeop" in msg and "merge()" in msg


def test_local_source_attrs_and_unique():
    st = llb.local("context", include=["a", "<b>&"], exclude=["*.env"], follow_paths=["x"],
                   shared_key_hint="hint")
    op = st.marshal().ops()[0]
    assert op.source.identifier == "local://context"
    attrs = dict(op.source.attrs)
    assert attrs == {
        "local.includepattern": '["a","\\u003cb\\u003e\\u0026"]',  # Go's encoding/json escaping
        "local.excludepatterns": '["*.env"]',
        "local.followpaths": '["x"]',
        "local.sharedkeyhint": "hint",
    }
    assert json.loads(attrs["local.includepattern"]) == ["a", "<b>&"]
    assert not op.HasField("platform")
    # a per-solve unique id goes into local sources only, and changes only their sub-graph
    img = llb.image("alpine", platform=P)
    g = img.copy(st, "/", "/ctx/")
    plain, u1, u2 = g.marshal(), g.marshal(local_unique="s1"), g.marshal(local_unique="s2")
    assert plain.digests[0] == u1.digests[0] == u2.digests[0]  # the image op is unaffected
    assert len({plain.head_digest, u1.head_digest, u2.head_digest}) == 3
    src = [o for o in u1.ops() if o.WhichOneof("op") == "source" and o.source.identifier.startswith("local")][0]
    assert src.source.attrs["local.unique"] == "s1"
    assert "source.local.unique" in u1.caps and "source.local.unique" not in plain.caps
    assert g.marshal().serialize() == plain.serialize()  # memo per unique value stays correct
    # an explicit session or unique wins
    fixed = llb.local("c", session="sess", unique="u").marshal(local_unique="s9").ops()[0]
    assert dict(fixed.source.attrs) == {"local.session": "sess", "local.unique": "u"}


@pytest.mark.parametrize("url, ref, subdir, ident, full", [
    ("https://github.com/moby/buildkit.git", "v0.11.6", "",
     "git://github.com/moby/buildkit.git#v0.11.6", "https://github.com/moby/buildkit.git"),
    ("github.com/moby/buildkit", "", "", "git://github.com/moby/buildkit",
     "https://github.com/moby/buildkit"),
    ("git@github.com:moby/buildkit.git", "main", "docs/", "git://github.com/moby/buildkit.git#main:docs",
     "git@github.com:moby/buildkit.git"),
    ("https://user@example.com:8443/r.git#dev:sub", "", "", "git://example.com:8443/r.git#dev:sub",
     "https://user@example.com:8443/r.git"),
])
def test_git_source(url, ref, subdir, ident, full):
    op = llb.git(url, ref=ref, subdir=subdir, keep_git_dir=True).marshal().ops()[0]
    assert op.source.identifier == ident
    attrs = dict(op.source.attrs)
    assert attrs["git.fullurl"] == full
    assert attrs["git.keepgitdir"] == "true"
    assert attrs["git.authtokensecret"] == "GIT_AUTH_TOKEN"
    if url.startswith("git@"):
        assert attrs["git.mountsshsock"] == "default"


def test_http_source():
    d = llb.http("https://example.com/x.tar.gz", checksum="sha256:" + "f" * 64, filename="x.tgz",
                 perm=0o755, uid=1000, gid=1000).marshal()
    op = d.ops()[0]
    assert op.source.identifier == "https://example.com/x.tar.gz"
    assert dict(op.source.attrs) == {"http.checksum": "sha256:" + "f" * 64, "http.filename": "x.tgz",
                                     "http.perm": "0755", "http.uid": "1000", "http.gid": "1000"}
    assert {"source.http", "source.http.checksum", "source.http.perm", "soruce.http.uidgid"} <= d.caps
    with pytest.raises(llb.LLBError):
        llb.http("ftp://example.com/x")


def test_scratch_marshals_to_an_empty_definition():
    d = llb.scratch().marshal()
    assert d.is_empty and d.defs == () and d.terminal_digest is None
    assert llb.scratch().digest is None
    with pytest.raises(llb.LLBError):
        llb.scratch().with_name("x")


def test_with_name_changes_metadata_not_digest():
    st = llb.image("alpine", platform=P).run(["true"])
    named = st.with_name("step one")
    assert named.digest == st.digest
    md = named.marshal().to_pb().metadata[named.digest]
    assert md.description["llb.customname"] == "step one"
    assert "meta.description" not in st.marshal().caps


def test_definition_pb_roundtrip():
    d = sample_graph().marshal()
    pb = ops_pb2.Definition.FromString(d.serialize())
    assert list(getattr(pb, "def")) == list(d.defs)
    assert pb.SerializeToString(deterministic=True) == d.serialize()


def test_large_graphs_are_fast_and_not_recursive():
    st = llb.image("alpine", platform=P)
    for i in range(100):
        st = st.run(["sh", "-c", f"echo {i} > /f{i}"]) if i % 2 else st.mkfile(f"/f{i}", b"x")
    t = time.perf_counter()
    d = st.marshal()
    first = time.perf_counter() - t
    assert len(d.defs) == 102 and first < 1.0
    deep = llb.scratch()
    for i in range(5000):  # deeper than Python's recursion limit
        deep = deep.run(["true"])
    assert len(deep.marshal().defs) == 5001
