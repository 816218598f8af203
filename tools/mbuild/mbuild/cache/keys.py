"""Action keys: the one place that says what a target's output depends on.

A target's key is the sha256 of a canonical JSON document (sorted keys, no
whitespace) holding:

``schema``
    The version of this derivation (bumped whenever it changes).
``rule``, ``rule_module``, ``rule_files``, ``api``
    The rule's name, the module declaring it, the sha256 of every file of the
    rule's code (its module and each workspace module it imports, found when
    the modules load), and the rule API versions that code imports. A change
    to a rule file changes the keys of exactly that rule's targets (and of
    what depends on them); nothing is bumped by hand.
``attrs``
    The target's attributes except ``name``, ``visibility`` and ``tags``;
    labels as ``//pkg:name`` strings.
``context``
    The workspace facts the rule read through its context (the workspace
    name, a generated file's path to a workspace file).
``llb``
    The digest of the target's LLB definition, when it has one (marshalled
    without per-solve uniqueness, so it is the same on every machine). It
    changes with anything the rule emits.
``config``
    The image config (Env, User, Cmd…) the stage carries to the exporter.
``generated``
    For a generated file: its path, the render function (``file:name``; its
    code is in ``rule_files``) and the arguments it is called with.
``sources``
    Each workspace file the target reads directly: ``path -> kind:sha256``,
    where kind is ``f`` (file), ``x`` (executable) or ``l`` (symlink).
``deps``
    The keys of the targets it uses (their outputs are in its inputs).
``bases``
    Each base image name -> the digest it resolved to.
``platform``
    The platform really built (the one the LLB and the base images were
    resolved for).
``engine``
    Output-relevant engine options: the exporter, media types and the
    ``source_date_epoch`` image times are set to (always: the default epoch
    is fixed, so an unrelated commit changes nothing).

Excluded on purpose: absolute paths, mtimes, user names, the checkout
location and the machine — two checkouts on two machines get equal keys.
So are build secrets' values, as in BuildKit: a target's key has each
secret's id and declared source (attributes), never what it reads; change
the id, or build with ``--no-cache``, to run its steps with a new value.

A target built for several platforms (one image index) has one key per
platform, each as above with its ``platform``, and its job's key is over
those (``variants``: platform -> key; :func:`mbuild.execution.build.job_keys`).
A ``dockerfile`` target's ``bases`` are its FROM images (``FROM <ref>``) and
its ``sources`` the Dockerfile and its context after the ignore file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from ..analysis.providers import TargetInfo
from ..analysis.rule import function_name
from ..loading.labels import Label
from .digests import FileDigest

KEY_SCHEMA = "mbuild-key-v2"
_IMPLICIT = ("name", "visibility", "tags")


def _plain(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value  # the common case first: this runs for every listed file
    if kind is Label:
        return str(value)
    if kind is tuple or kind is list:
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)  # built once


def canonical(doc: Any) -> bytes:
    return _CANONICAL.encode(doc).encode()


_SCALARS = (str, int, float, bool, type(None))


def render(doc: Mapping[str, Any]) -> str:
    """``json.dumps(doc, indent=2, sort_keys=True)``, the same text, fast.

    With an indent, the json module falls back to its pure-Python encoder,
    which took 0.12 s for the 100,000 sources of a large filegroup. A flat
    mapping (sources, deps) is written here by the C encoder, whose item
    separator carries the newline and indent.
    """
    if not doc or not all(isinstance(k, str) for k in doc):
        return json.dumps(doc, indent=2, sort_keys=True)
    parts = []
    for k in sorted(doc):
        v = doc[k]
        if isinstance(v, Mapping) and v and all(isinstance(x, _SCALARS) for x in v.values()):
            body = json.dumps(v, sort_keys=True, separators=(",\n    ", ": "))[1:-1]
            text = "{\n    " + body + "\n  }"
        else:
            text = json.dumps(v, indent=2, sort_keys=True).replace("\n", "\n  ")
        parts.append(f"  {json.dumps(k)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}"


@dataclass(frozen=True)
class KeyInputs:
    """Everything a key is made of, kept so ``mbuild explain`` can show it."""

    doc: Mapping[str, Any]

    @cached_property
    def key(self) -> str:
        """sha256 of the canonical document (computed once: a target's key is
        read by each of its dependents, and the document can be large)."""
        return hashlib.sha256(canonical(self.doc)).hexdigest()


def key_inputs(info: TargetInfo, files: Mapping[str, FileDigest], dep_keys: Mapping[Label, str],
               base_digests: Mapping[str, str], platform: str, engine: Mapping[str, str]) -> KeyInputs:
    rule = info.rule
    doc: dict[str, Any] = {
        "schema": KEY_SCHEMA,
        "rule": info.kind,
        "rule_module": rule.module,
        "rule_files": dict(rule.files),
        "api": list(rule.api),
        "attrs": {k: _plain(v) for k, v in sorted(info.attrs.items()) if k not in _IMPLICIT},
        "context": _plain(info.context),
        "sources": {path: files[path].key_part() for path in info.sources},
        "deps": {str(d): dep_keys[d] for d in info.deps},
        "bases": {b.name: base_digests.get(b.name, b.digest or b.ref) for b in info.bases},
        "platform": platform,
        "engine": dict(engine),
    }
    if info.stage is not None:
        doc["llb"] = info.stage.marshal().head_digest
        doc["config"] = info.stage.image_config()
    if info.generated is not None:
        gen = info.generated
        doc["generated"] = {"path": gen.path, "render": function_name(gen.function), "args": _plain(gen.args),
                            "images": [str(label) for label in gen.image_deps]}
    return KeyInputs(doc)


def diff_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human lines naming what changed between two key documents."""
    lines: list[str] = []
    for field in sorted(set(old) | set(new)):
        a, b = old.get(field), new.get(field)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for k in sorted(set(a) | set(b)):
                if k not in a:
                    lines.append(f"{field}: added {k}")
                elif k not in b:
                    lines.append(f"{field}: removed {k}")
                elif a[k] != b[k]:
                    lines.append(f"{field}: {k} changed ({_short(a[k])} -> {_short(b[k])})")
        else:
            lines.append(f"{field}: {_short(a)} -> {_short(b)}")
    return lines


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."
