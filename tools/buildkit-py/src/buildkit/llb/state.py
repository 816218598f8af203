"""State: an immutable handle on a filesystem result plus the image config
that goes with it. Every method returns a new State; nothing is mutated.

    base = image("python:3.11-slim", config=cfg)
    app = (base.with_workdir("/app")
               .copy(local("context"), "requirements.txt", "./")
               .run("pip install -r requirements.txt",
                    mounts=[cache("/root/.cache/pip", "pip")], name="pip install")
               .with_cmd(["python", "-m", "app"]))
    definition = app.marshal()
    config_json = app.image_config()
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from . import fileaction as fa
from .config import ImageConfig, env_set, resolve_path
from .errors import LLBError
from .marshal import Definition, marshal, node_digest
from .mounts import BIND, SSH, Mount
from .ops import NETWORK, SECURITY, DiffNode, ExecNode, FileNode, MergeNode, OpMeta, Output
from .platform import Platform, as_platform, host_platform

EnvArg = Mapping[str, str] | Sequence[str] | None


@dataclass(frozen=True)
class State:
    output: Output | None = None  # None is scratch (an empty filesystem)
    config: ImageConfig = ImageConfig()
    platform: Platform = field(default_factory=host_platform)

    # ---- identity
    @property
    def is_scratch(self) -> bool:
        return self.output is None

    @property
    def digest(self) -> str | None:
        """Digest of the op producing this State (``None`` for scratch)."""
        return node_digest(self.output.node) if self.output is not None else None

    def marshal(self, local_unique: str | None = None) -> Definition:
        """The Definition solving to this State.

        ``local_unique`` is written as ``local.unique`` into every local source
        that names neither a session nor its own ``unique``. Go's client puts a
        fresh random id there for every marshal so that two concurrent solves
        never share a local-source vertex; the solve client should pass one
        (e.g. its session id). ``None`` leaves it out: bytes stay reproducible.
        """
        return marshal(self.output, local_unique)

    def _derive(self, output: Output | None) -> "State":
        return State(output=output, config=self.config, platform=self.platform)

    # ---- image config
    def with_env(self, key: str, value: str) -> "State":
        return replace(self, config=self.config.with_env(key, value))

    def get_env(self, key: str, default: str | None = None) -> str | None:
        value = self.config.get_env(key)
        return default if value is None else value

    def get_workdir(self) -> str:
        """The image config's working directory ("" when unset)."""
        return self.config.workdir or ""

    def with_workdir(self, path: str) -> "State":
        return replace(self, config=self.config.with_workdir(path))

    def with_user(self, user: str) -> "State":
        return replace(self, config=self.config.with_user(user))

    def with_entrypoint(self, entrypoint: Sequence[str] | str | None) -> "State":
        return replace(self, config=self.config.with_entrypoint(entrypoint))

    def with_cmd(self, cmd: Sequence[str] | str | None) -> "State":
        return replace(self, config=self.config.with_cmd(cmd))

    def with_exposed_port(self, port: str | int) -> "State":
        return replace(self, config=self.config.with_exposed_port(port))

    def with_label(self, key: str, value: str) -> "State":
        return replace(self, config=self.config.with_label(key, value))

    def with_config(self, config: ImageConfig | Mapping[str, Any]) -> "State":
        if not isinstance(config, ImageConfig):
            config = ImageConfig.from_oci(config)
        return replace(self, config=config)

    def with_platform(self, platform: str | Platform) -> "State":
        """Platform for later ``run`` steps and :meth:`image_config`."""
        return replace(self, platform=as_platform(platform))

    def image_config(self, platform: str | Platform | None = None) -> dict[str, Any]:
        """The OCI image config JSON object (for ``containerimage.config``)."""
        return self.config.to_oci_image(as_platform(platform, self.platform))

    def image_config_json(self, platform: str | Platform | None = None) -> str:
        """:meth:`image_config` as canonical JSON text."""
        return json.dumps(self.image_config(platform), sort_keys=True, separators=(",", ":"))

    # ---- metadata
    def with_name(self, name: str) -> "State":
        """Name the op producing this State in progress output."""
        if self.output is None:
            raise LLBError("scratch has no op to name")
        node = self.output.node.with_meta(name=name)
        return replace(self, output=Output(node, self.output.index))

    # ---- exec
    def run(self, args: Sequence[str] | str, *, env: EnvArg = None, cwd: str | None = None,
            user: str | None = None, network: str = "sandbox", security: str = "sandbox",
            mounts: Iterable[Mount] = (), name: str | None = None,
            valid_exit_codes: Iterable[int] | None = None, hostname: str | None = None,
            extra_hosts: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
            ignore_cache: bool = False, platform: str | Platform | None = None) -> "ExecState":
        """Run a command with this State as ``/``. A string is shell form
        (``/bin/sh -c``). Env, cwd and user default to the image config; ``env``
        adds to (or replaces in) the config's env for this run only."""
        argv = ["/bin/sh", "-c", args] if isinstance(args, str) else [str(a) for a in args]
        if not argv or not argv[0]:
            raise LLBError("run needs a command")
        if network not in NETWORK:
            raise LLBError(f"network {network!r}: want one of {', '.join(NETWORK)}")
        if security not in SECURITY:
            raise LLBError(f"security {security!r}: want one of {', '.join(SECURITY)}")

        run_env = self.config.env
        items = env.items() if isinstance(env, Mapping) else (
            tuple(e.partition("=")[::2]) for e in (env or ()))
        for k, v in items:
            run_env = env_set(run_env, k, str(v))

        mounts = list(mounts)
        bound: list[Mount] = [Mount(BIND, "/", source=self.output)]
        for m in mounts:
            if not isinstance(m, Mount):
                raise LLBError(f"run mounts must be made with bind()/cache()/tmpfs()/secret()/ssh(), got {m!r}")
            if m.source is not None and not isinstance(m.source, State):
                raise LLBError(f"the source of the mount at {m.dest} must be a State")
            src = m.source.output if m.source is not None else None
            bound.append(replace(m, source=src))
        dests = [m.dest for m in bound]
        dup = sorted({d for d in dests if dests.count(d) > 1})
        if dup:
            raise LLBError(f"more than one mount at {', '.join(dup)}")
        bound.sort(key=lambda m: m.dest)

        ssh_mounts = [m for m in mounts if m.kind == SSH]
        if ssh_mounts and not _env_has(run_env, "SSH_AUTH_SOCK"):
            run_env = env_set(run_env, "SSH_AUTH_SOCK", ssh_mounts[0].dest)

        if isinstance(extra_hosts, Mapping):
            hosts = tuple((str(h), str(ip)) for h, ip in extra_hosts.items())
        else:
            hosts = tuple((str(h), str(ip)) for h, ip in (extra_hosts or ()))

        node = ExecNode(
            meta=OpMeta(name=name, ignore_cache=ignore_cache),
            args=tuple(argv),
            env=run_env,
            cwd=resolve_path(self.config.cwd, cwd) if cwd else self.config.cwd,
            user=self.config.user if user is None else str(user),
            hostname=hostname or "",
            extra_hosts=hosts,
            valid_exit_codes=tuple(int(c) for c in valid_exit_codes) if valid_exit_codes is not None else None,
            network=network,
            security=security,
            platform=as_platform(platform, self.platform),
            mounts=tuple(bound),
        )
        return ExecState(output=Output(node, 0), config=self.config, platform=node.platform)

    # ---- files
    def file(self, action: fa.FileAction, *, name: str | None = None) -> "State":
        """Apply one file action. Consecutive actions on the same State (with
        the same ``name``) are chained into one FileOp."""
        resolved = action.resolved(self.config.cwd)
        src = None
        if isinstance(action, fa.Copy):
            if not isinstance(action.source, State):
                raise LLBError(f"copy source must be a State, got {type(action.source).__name__}")
            src = action.source.output
        meta = OpMeta(name=name)
        named = resolved.owner is not None and resolved.owner.is_named
        prev = self.output.node if self.output is not None else None
        if (isinstance(prev, FileNode) and self.output.index == 0 and prev.meta == meta
                and not named and (src is None or src.node is not prev)):
            node = FileNode(meta=meta, base=prev.base, actions=prev.actions + (resolved,),
                            sources=prev.sources + (src,))
        else:
            if named and self.output is None:
                raise LLBError(
                    f"owner {_owner_text(resolved.owner)} is a name, but the destination is scratch "
                    "(no /etc/passwd to look it up in); use numeric uid:gid"
                )
            node = FileNode(meta=meta, base=self.output, actions=(resolved,), sources=(src,))
        return self._derive(Output(node, 0))

    def mkdir(self, path: str, mode: int = 0o755, parents: bool = False, owner: fa.OwnerSpec = None,
              *, timestamp: Any = None, name: str | None = None) -> "State":
        return self.file(fa.mkdir(path, mode, parents, owner, timestamp), name=name)

    def mkfile(self, path: str, data: bytes | str, mode: int = 0o644, owner: fa.OwnerSpec = None,
               *, timestamp: Any = None, name: str | None = None) -> "State":
        return self.file(fa.mkfile(path, data, mode, owner, timestamp), name=name)

    def rm(self, path: str, allow_not_found: bool = False, allow_wildcard: bool = False,
           *, name: str | None = None) -> "State":
        return self.file(fa.rm(path, allow_not_found, allow_wildcard), name=name)

    def symlink(self, target: str, path: str, owner: fa.OwnerSpec = None, *, timestamp: Any = None,
                name: str | None = None) -> "State":
        """Create a symlink at ``path`` pointing to ``target``."""
        return self.file(fa.symlink(target, path, owner, timestamp), name=name)

    def copy(self, src_state: "State", src: str, dest: str, owner: fa.OwnerSpec = None,
             mode: int | None = None, include: Sequence[str] = (), exclude: Sequence[str] = (),
             create_dest_path: bool = True, allow_wildcard: bool = True,
             allow_empty_wildcard: bool = True, follow_symlinks: bool = True,
             dir_copy_contents: bool = True, timestamp: Any = None, *,
             attempt_unpack: bool = False, always_replace_existing_dest_paths: bool = False,
             name: str | None = None) -> "State":
        """Copy ``src`` (relative to ``src_state``'s workdir) from ``src_state``
        to ``dest`` (relative to this State's workdir)."""
        action = fa.copy(src_state, src, dest, owner, mode, include, exclude, create_dest_path,
                         allow_wildcard, allow_empty_wildcard, follow_symlinks, dir_copy_contents,
                         attempt_unpack, always_replace_existing_dest_paths, timestamp)
        return self.file(action, name=name)


@dataclass(frozen=True)
class ExecState(State):
    """The result of :meth:`State.run`: the root filesystem after the command,
    with access to the other writable bind mounts' results."""

    @property
    def exec_node(self) -> ExecNode:
        return self.output.node  # type: ignore[return-value]

    def root(self) -> State:
        return self._derive(self.output)

    def get_mount(self, dest: str) -> State:
        """The contents of the writable bind mount at ``dest`` after the run
        (a read-only bind gives back its unchanged source)."""
        node = self.exec_node
        for m in node.mounts:
            if m.dest != dest:
                continue
            if m.kind != BIND:
                raise LLBError(f"the {m.kind} mount at {dest} has no result")
            if m.readonly:
                return State(output=m.source, platform=self.platform)
            return State(output=Output(node, node.output_index(dest)), platform=self.platform)
        raise LLBError(f"no mount at {dest}")


def merge(states: Sequence[State], *, name: str | None = None) -> State:
    """Layer ``states`` bottom to top. Scratch inputs are dropped; one input is
    returned as is. The config is the first input's."""
    layers = [s for s in states if s.output is not None]
    if not layers:
        return states[0]._derive(None) if states else State()
    if len(layers) == 1:
        return layers[0]
    node = MergeNode(meta=OpMeta(name=name), layers=tuple(s.output for s in layers))
    return layers[0]._derive(Output(node, 0))


def diff(lower: State, upper: State, *, name: str | None = None) -> State:
    """What ``upper`` changed relative to ``lower``. The config is ``lower``'s."""
    if lower.output is None:
        return upper if upper.output is not None else lower
    node = DiffNode(meta=OpMeta(name=name), lower=lower.output, upper=upper.output)
    return lower._derive(Output(node, 0))


def _env_has(env: Sequence[str], key: str) -> bool:
    return any(e.partition("=")[0] == key for e in env)


def _owner_text(owner: fa.Owner) -> str:
    return ":".join(str(x) for x in (owner.user, owner.group) if x is not None)
