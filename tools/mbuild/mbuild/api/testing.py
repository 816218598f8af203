"""Testing rules without an engine: targets and fake base images go in;
providers, LLB steps, image configs, generated files and keys come out.

    from mbuild.api.testing import RuleHarness

    def test_site(tmp_path):
        h = RuleHarness.write(tmp_path, {
            "WORKSPACE.toml": 'rules = ["rules/site.py"]\\n[images.web]\\nref = "nginx:1"\\n',
            "rules/site.py": SITE_RULE,
            "site/BUILD": 'static_site(name = "site", base = "web", srcs = [":files"], image = "site:1")\\n'
                          'filegroup(name = "files", srcs = ["index.html"])\\n',
            "site/index.html": "<h1>hi</h1>\\n",
        })
        site = h.analyze("//site:site")["//site:site"]
        assert site[mb.Image].name == "site:1"
        assert ["/bin/sh", "-c", "..."] in site.commands
        assert site.image_config["WorkingDir"] == "/srv"

The harness loads the workspace exactly as a build does (WORKSPACE.toml,
its rule modules with their guards, the BUILD files), analyses with fake
base images (an empty config and a digest made from the name, unless given),
and computes keys the way a build does, for the platform and epoch given.
Nothing is solved, nothing needs Docker.
"""

from __future__ import annotations

import hashlib
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from ..analysis.analyze import analyze
from ..analysis.providers import BuiltImage, ResolvedBase, TargetInfo
from ..cache.keys import KeyInputs
from ..loading.labels import Label, parse_label


@dataclass(frozen=True)
class FakeBase:
    """A base image as BuildKit would resolve it: its OCI config, digest and layers."""

    config: Mapping[str, Any] | None = None
    digest: str | None = None
    diff_ids: tuple[str, ...] = ()


_NETWORK = {0: "sandbox", 1: "host", 2: "none"}  # ops.proto NetMode


def _fake_digest(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def steps(state, skip: frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """The LLB ops of ``state`` (but those whose digest is in ``skip``),
    dependencies first, as plain dicts:
    ``{"source": "docker-image://…", "attrs": {...}}``,
    ``{"exec": [args], "cwd": …, "env": [...], "user": …, "network": …, "mounts": [{"type", "dest", "id"}]}``,
    ``{"file": [("mkdir", path), ("copy", src, dest, owner), ("mkfile", path), ("rm", path), ("symlink", …)]}``,
    ``{"merge": n}``, ``{"diff": True}``."""
    from buildkit.proto import ops_pb2

    out = []
    definition = state.marshal()
    for digest, op in zip(definition.digests, definition.ops()):
        if digest in skip:
            continue
        which = op.WhichOneof("op")
        if which == "source":
            out.append({"source": op.source.identifier, "attrs": dict(op.source.attrs)})
        elif which == "exec":
            meta = op.exec.meta
            mounts = [{"type": ops_pb2.MountType.Name(m.mountType).lower(), "dest": m.dest,
                       "id": m.cacheOpt.ID or m.secretOpt.ID} for m in op.exec.mounts]
            out.append({"exec": list(meta.args), "cwd": meta.cwd, "env": list(meta.env), "user": meta.user,
                        "network": _NETWORK[op.exec.network], "mounts": mounts})
        elif which == "file":
            actions = []
            for action in op.file.actions:
                kind = action.WhichOneof("action")
                body = getattr(action, kind)
                if kind == "copy":
                    owner = body.owner.user.byName.name if body.HasField("owner") else ""
                    actions.append(("copy", body.src, body.dest, owner))
                elif kind == "symlink":
                    actions.append(("symlink", body.oldpath, body.newpath))
                else:
                    actions.append((kind, body.path))
            out.append({"file": actions})
        elif which == "merge":
            out.append({"merge": len(op.merge.inputs)})
        elif which == "diff":
            out.append({"diff": True})
    return out


class TargetResult:
    """One analysed target: ``result[ProviderType]``, ``providers``, ``stage``,
    ``steps`` (its whole LLB graph), ``own_steps`` (without the ops of its
    dependencies' stages), ``commands``, ``image_config``, ``key``,
    ``key_inputs`` and ``render(...)`` for a generated file."""

    def __init__(self, info: TargetInfo, key: KeyInputs, infos: Mapping[Label, TargetInfo]) -> None:
        self.info = info
        self._key = key
        self._infos = infos

    @property
    def label(self) -> Label:
        return self.info.label

    @property
    def providers(self) -> Mapping[type, Any]:
        return self.info.providers

    def __getitem__(self, provider_type: type) -> Any:
        return self.info.providers[provider_type]

    def __contains__(self, provider_type: type) -> bool:
        return provider_type in self.info.providers

    @property
    def stage(self):
        return self.info.stage

    @property
    def steps(self) -> list[dict[str, Any]]:
        return steps(self.info.stage) if self.info.stage is not None else []

    @property
    def own_steps(self) -> list[dict[str, Any]]:
        """The steps this target's rule added to what its dependencies' stages had."""
        if self.info.stage is None:
            return []
        inherited = set()
        for dep in self.info.deps:
            stage = self._infos[dep].stage
            if stage is not None:
                inherited.update(stage.marshal().digests)
        return steps(self.info.stage, frozenset(inherited))

    @property
    def commands(self) -> list[list[str]]:
        """The args of every exec step of the whole graph, in order."""
        return [step["exec"] for step in self.steps if "exec" in step]

    @property
    def image_config(self) -> dict[str, Any]:
        """The image config's ``config`` object (Env, Cmd, User, WorkingDir…)."""
        return self.info.stage.image_config().get("config", {}) if self.info.stage is not None else {}

    @property
    def key(self) -> str:
        return self._key.key

    @property
    def key_inputs(self) -> Mapping[str, Any]:
        return self._key.doc

    def render(self, digests: Mapping[str, str] | None = None) -> str:
        """A generated file's text, its images as built with ``digests``
        (label -> manifest digest; default: digests made from the labels)."""
        gen = self.info.generated
        if gen is None:
            raise ValueError(f"{self.label} generates no file")
        digests = dict(digests or {})
        built = {}
        for label in gen.image_deps:
            image = self._infos[label].image
            built[label] = BuiltImage(label, image.name, digests.get(str(label), _fake_digest(str(label))), image)
        return gen.render(built).decode()


class Analysis(Mapping[str, TargetResult]):
    """Analysed targets by label text (``"//infra:python_runtime"``)."""

    def __init__(self, results: Mapping[Label, TargetResult]) -> None:
        self._results = {str(label): r for label, r in results.items()}

    def __getitem__(self, label: str) -> TargetResult:
        return self._results[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._results)

    def __len__(self) -> int:
        return len(self._results)


class RuleHarness:
    """Analyses targets of the workspace at ``root`` without an engine.

    ``bases`` overrides fake base images by WORKSPACE.toml name; ``platform``
    and ``epoch`` are what keys are computed for.
    """

    def __init__(self, root: Path, bases: Mapping[str, FakeBase] | None = None, platform: str = "linux/amd64",
                 epoch: int = 0) -> None:
        self.root = Path(root)
        self.bases = dict(bases or {})
        self.platform = platform
        self.epoch = epoch

    @classmethod
    def write(cls, root: Path, files: Mapping[str, str], **kwargs: Any) -> "RuleHarness":
        """Write ``files`` (path -> text, dedented) under ``root``, then a harness for it."""
        for rel, text in files.items():
            path = Path(root) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text))
        return cls(root, **kwargs)

    def analyze(self, *labels: str) -> Analysis:
        """Load the workspace, analyse ``labels`` (and their deps), compute every key."""
        from ..cache.digests import StatCache
        from ..execution.build import compute_keys
        from ..workflow import engine_options, load

        loaded = load(self.root, list(labels))
        wanted = [parse_label(text, loaded.current_package) for text in labels]
        resolved = self._resolved(loaded.workspace)
        infos = analyze(loaded.graph, loaded.workspace, wanted, resolved, loaded.rules, self.platform)
        stat_cache = StatCache(None)  # no stat database: every file is read
        keys = compute_keys(loaded.workspace, infos, resolved, stat_cache, engine_options(self.epoch), self.platform)
        return Analysis({label: TargetResult(info, keys[label], infos) for label, info in infos.items()})

    def _resolved(self, workspace) -> dict[str, ResolvedBase]:
        out = {}
        for name in workspace.images:
            fake = self.bases.get(name, FakeBase())
            out[name] = ResolvedBase(name, fake.digest or _fake_digest(name), dict(fake.config or {}), fake.diff_ids)
        return out
