"""ExecOp: mounts, outputs, defaults from the image config, caps."""

from __future__ import annotations

import pytest

from buildkit import llb
from buildkit.proto import ops_pb2

P = "linux/amd64"


def exec_op(definition: llb.Definition) -> ops_pb2.Op:
    (op,) = [o for o in definition.ops() if o.WhichOneof("op") == "exec"]
    return op


def test_shell_form_and_defaults_from_image_config():
    base = llb.image("alpine", platform=P, config={
        "Env": ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"],
        "User": "app", "WorkingDir": "/srv",
    })
    op = exec_op(base.run("echo hi").marshal())
    meta = op.exec.meta
    assert list(meta.args) == ["/bin/sh", "-c", "echo hi"]
    assert list(meta.env) == ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"]
    assert meta.cwd == "/srv"
    assert meta.user == "app"
    assert meta.removeMountStubsRecursive is True
    assert (op.platform.OS, op.platform.Architecture) == ("linux", "amd64")


def test_run_overrides_are_per_run_only():
    base = llb.image("alpine", platform=P).with_env("A", "1").with_env("B", "2").with_workdir("/w")
    st = base.run(["env"], env={"A": "x", "C": "3"}, cwd="sub", user="1000:1000")
    meta = exec_op(st.marshal()).exec.meta
    assert list(meta.env) == ["A=x", "B=2", "C=3"]  # replaced in place, then appended
    assert meta.cwd == "/w/sub"
    assert meta.user == "1000:1000"
    # the State's own config is untouched by run options
    assert st.config.env == ("A=1", "B=2") and st.config.user == ""


def test_no_path_is_added_when_env_has_none():
    meta = exec_op(llb.image("alpine", platform=P).run(["true"]).marshal()).exec.meta
    assert list(meta.env) == []  # the daemon adds its default PATH
    assert meta.cwd == "/"


def test_mount_order_outputs_and_inputs():
    base = llb.image("alpine", platform=P)
    ctx = llb.local("context")
    st = base.run(["make"], mounts=[
        llb.tmpfs("/tmp", size=1 << 20),
        llb.bind("/out", llb.scratch()),
        llb.cache("/root/.cache", "pip", sharing="locked"),
        llb.bind("/src", ctx, readonly=True, selector="app"),
        llb.bind("/a-out", ctx),
        llb.secret("/run/secrets/token", "token"),
        llb.ssh(),
    ])
    d = st.marshal()
    op = exec_op(d)
    got = [(m.dest, m.input, m.output, m.mountType, m.readonly) for m in op.exec.mounts]
    assert got == [
        ("/", 0, 0, ops_pb2.BIND, False),
        ("/a-out", 1, 1, ops_pb2.BIND, False),
        ("/out", -1, 2, ops_pb2.BIND, False),
        ("/root/.cache", -1, -1, ops_pb2.CACHE, False),
        ("/run/buildkit/ssh_agent.0", -1, -1, ops_pb2.SSH, False),
        ("/run/secrets/token", -1, -1, ops_pb2.SECRET, False),
        ("/src", 1, -1, ops_pb2.BIND, True),  # same input as /a-out: deduplicated
        ("/tmp", -1, -1, ops_pb2.TMPFS, False),
    ]
    assert len(op.inputs) == 2
    mounts = {m.dest: m for m in op.exec.mounts}
    assert mounts["/src"].selector == "app"
    assert mounts["/root/.cache"].cacheOpt.ID == "pip"
    assert mounts["/root/.cache"].cacheOpt.sharing == ops_pb2.LOCKED
    assert mounts["/tmp"].TmpfsOpt.size == 1 << 20
    assert mounts["/run/secrets/token"].secretOpt.mode == 0o400
    assert mounts["/run/buildkit/ssh_agent.0"].SSHOpt.ID == "default"
    assert mounts["/run/buildkit/ssh_agent.0"].SSHOpt.mode == 0o600
    assert "SSH_AUTH_SOCK=/run/buildkit/ssh_agent.0" in op.exec.meta.env

    caps = d.caps
    for cap in ["exec.meta.base", "exec.mount.bind", "exec.mount.selector", "exec.mount.cache",
                "exec.mount.cache.sharing", "exec.mount.tmpfs", "exec.mount.tmpfs.size",
                "exec.mount.secret", "exec.mount.ssh"]:
        assert cap in caps, cap

    # outputs: the root is 0; writable binds are numbered in dest order
    assert st.output.index == 0
    assert st.get_mount("/a-out").output.index == 1
    assert st.get_mount("/out").output.index == 2
    assert st.get_mount("/src").output == ctx.output  # read-only: the unchanged source
    with pytest.raises(llb.LLBError):
        st.get_mount("/root/.cache")
    with pytest.raises(llb.LLBError):
        st.get_mount("/nope")


def test_get_mount_state_marshals_with_output_index():
    st = llb.image("alpine", platform=P).run(["sh", "-c", "echo > /out/x"],
                                             mounts=[llb.bind("/out", llb.scratch())])
    d = st.get_mount("/out").marshal()
    terminal = d.ops()[-1]
    assert terminal.inputs[0].index == 1
    assert terminal.inputs[0].digest == st.digest
    assert st.root().output == st.output


def test_cache_mount_with_source_has_an_input():
    seed = llb.image("alpine", platform=P)
    op = exec_op(llb.scratch().run(["true"], mounts=[llb.cache("/c", "c", source=seed)]).marshal())
    got = [(m.dest, m.input, m.output) for m in op.exec.mounts]
    assert got == [("/", -1, 0), ("/c", 0, -1)]  # scratch root: input -1, still output 0


def test_network_security_hosts_exit_codes_and_ignore_cache():
    st = llb.image("alpine", platform=P).run(
        ["true"], network="host", security="insecure", hostname="builder",
        extra_hosts={"db": "10.0.0.2"}, valid_exit_codes=[0, 1], ignore_cache=True, name="x")
    d = st.marshal()
    op = exec_op(d)
    assert op.exec.network == ops_pb2.HOST
    assert op.exec.security == ops_pb2.INSECURE
    assert op.exec.meta.hostname == "builder"
    assert [(h.Host, h.IP) for h in op.exec.meta.extraHosts] == [("db", "10.0.0.2")]
    assert list(op.exec.meta.validExitCodes) == [0, 1]
    for cap in ["exec.meta.network", "exec.meta.security", "exec.validexitcode", "meta.ignorecache",
                "meta.description"]:
        assert cap in d.caps, cap
    md = d.to_pb().metadata[st.digest]
    assert md.ignore_cache and md.description["llb.customname"] == "x"
    none = exec_op(llb.image("alpine", platform=P).run(["true"], network="none").marshal())
    assert none.exec.network == ops_pb2.NONE


@pytest.mark.parametrize("kwargs", [
    {"network": "bridge"},
    {"security": "privileged"},
    {"mounts": [llb.tmpfs("/")]},
    {"mounts": [llb.tmpfs("/t"), llb.tmpfs("/t")]},
])
def test_invalid_runs(kwargs):
    with pytest.raises(llb.LLBError):
        llb.image("alpine").run(["true"], **kwargs)


def test_invalid_mounts():
    with pytest.raises(llb.LLBError):
        llb.tmpfs("relative")
    with pytest.raises(llb.LLBError):
        llb.cache("/c", "c", sharing="exclusive")
    with pytest.raises(llb.LLBError):
        llb.image("alpine").run([])


def test_platform_per_exec():
    st = llb.image("alpine", platform="linux/arm64").run(["true"])
    assert exec_op(st.marshal()).platform.Architecture == "arm64"
    other = llb.image("alpine", platform="linux/arm64").run(["true"], platform="linux/amd64")
    assert exec_op(other.marshal()).platform.Architecture == "amd64"
