"""``dockerfile``: an existing Dockerfile built by BuildKit's Dockerfile
frontend, the way ``docker buildx build`` builds it: the migration path from
bake, one target at a time.

A built-in rule rather than workspace code: a Dockerfile is not LLB a rule
can emit, but a request to the engine's frontend, whose context mbuild must
serve and whose inputs it must key. The target's action key covers:

* the Dockerfile (and its ``<name>.dockerignore``, when there is one);
* every file of the context after its ignore file: the files BuildKit could
  read. The context is served filtered by that same ignore file, so the
  frontend can read nothing the key did not cover;
* ``target``, ``build_args`` and the declared secrets' ids and sources (not
  their values);
* the digest of every image its ``FROM`` lines name, resolved through
  BuildKit like any base image (for each platform built), with the global
  ``ARG``s before the first ``FROM`` expanded (``build_args`` over their
  defaults); ``FROM`` of an earlier stage and ``scratch`` name no image. The
  frontend is handed those digests (as named contexts), so it builds from
  exactly the images the key names.

So an unchanged Dockerfile target is answered from the action cache,
locally or remotely, like any other.
"""

from __future__ import annotations

import re

from mbuild.api import v1 as mb

from ..analysis.providers import DockerfileBuild
from ..api.images import image_providers
from ..loading.workspace import BaseImage

# The image attributes a Dockerfile target takes (its config is the Dockerfile's).
_IMAGE_ATTRS = ("image", "push", "platforms", "service", "container_name", "publish", "labels")
_VAR = re.compile(r"\$(?:\{(\w+)(?::?([-+])([^}]*))?\}|(\w+))")


def _package_path(ctx, value: str, what: str) -> str:
    """A workspace-relative path from a path relative to the package (``//x`` from the root)."""
    if value.startswith("//"):
        path = value[2:].strip("/")
    else:
        path = "/".join(p for p in (ctx.package, value.strip("/")) if p and p != ".")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ctx.error(f"attribute {what!r}: {value!r} must stay inside the workspace (no '..'; "
                        f"use //path for a path from the workspace root)")
    return "/".join(parts)


def _expand(text: str, args: dict[str, str]) -> str:
    """A Dockerfile word with $VAR, ${VAR}, ${VAR:-default} and ${VAR:+alt} expanded."""
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(4)
        value = args.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value

    return _VAR.sub(sub, text)


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, rest) of a Dockerfile: comments dropped, continued lines joined."""
    escape = "\\"
    out, buf, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        m = re.match(r"#\s*escape\s*=\s*(\S)", stripped)
        if m and not out and not buf:
            escape = m.group(1)
            continue
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buf:
            start = number
        if stripped.endswith(escape):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
        buf = ""
    if buf:
        word, _, rest = buf.partition(" ")
        out.append((start, word.upper(), rest.strip()))
    return out


def from_images(text: str, build_args: dict[str, str], fail, target: str = "") -> dict[str, str]:
    """Each image the FROM lines name -> the platform it is pulled for ("" for
    the one built, else the FROM's ``--platform``), global ARGs expanded. A
    Dockerfile without FROM, or a ``target`` no stage is named, is ``fail``ed
    (the frontend would fail without naming the target)."""
    args: dict[str, str] = {"TARGETPLATFORM": "", "BUILDPLATFORM": ""}
    stages: set[str] = set()
    images: dict[str, str] = {}
    seen_from = False
    for line, word, rest in instructions(text):
        if word == "ARG" and not seen_from:
            for item in rest.split():
                name, eq, default = item.partition("=")
                args[name] = build_args.get(name, default.strip("\"'") if eq else args.get(name, ""))
        elif word == "FROM":
            seen_from = True
            parts = rest.split()
            platform = ""
            while parts and parts[0].startswith("--"):
                flag = parts.pop(0)
                if flag.startswith("--platform="):
                    platform = flag.split("=", 1)[1]
            if not parts:
                raise fail(f"line {line}: FROM names no image")
            image = _expand(parts[0], args)
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.add(parts[2].lower())
            if not image:
                raise fail(f"line {line}: FROM {parts[0]} expands to nothing; give the ARG a default or "
                           f"set it in build_args")
            if image.lower() in stages - ({parts[2].lower()} if len(parts) >= 3 else set()) or image == "scratch":
                continue
            if "$TARGETPLATFORM" in platform or "${TARGETPLATFORM}" in platform:
                platform = ""
            elif "BUILDPLATFORM" in platform:
                platform = "build"
            images[image] = platform
    if not seen_from:
        raise fail("no FROM line; a Dockerfile starts with FROM IMAGE (after its ARGs)")
    if target and target.lower() not in stages:
        named = ", ".join(sorted(stages)) or "none is named (FROM IMAGE AS NAME)"
        raise fail(f"no stage {target!r} for attribute 'target' (stages: {named})")
    return images


def _context_files(root, context: str, patterns) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The files of the context BuildKit may be sent: what FileSync sends with
    the Dockerfile's ignore ``patterns``, less what the workspace's
    ``.dockerignore`` keeps from every build (a context's ``.env`` included):
    those are never listed, hashed or sent. And the folders listed to find
    them (the context's own among them)."""
    import stat

    from buildkit.fswalk import walk

    from ..loading.sources import IgnoreFile

    workspace = IgnoreFile.load(root)
    base = root / context if context else root
    prefix = f"{context}/" if context else ""
    files, dirs = [], [context]
    for e in walk(base, exclude=tuple(patterns)):
        (dirs if stat.S_ISDIR(e.stat.st_mode) else files).append(prefix + e.path)
    return tuple(sorted(p for p in files if not workspace.excluded(p))), tuple(sorted(dirs))


def _ignore_candidates(dockerfile: str, context: str) -> tuple[str, str]:
    return f"{dockerfile}.dockerignore", f"{context}/.dockerignore" if context else ".dockerignore"


def ignore_file(root, dockerfile: str, context: str) -> str | None:
    """The ignore file the frontend applies: ``<Dockerfile>.dockerignore``
    beside the Dockerfile, else the context's ``.dockerignore``."""
    own, shared = _ignore_candidates(dockerfile, context)
    if (root / own).is_file():
        return own
    return shared if (root / shared).is_file() else None


def _dockerfile(ctx):
    from buildkit.dockerignore import read_dockerignore

    root = ctx._workspace.root
    src = _package_path(ctx, ctx.attr("src"), "src")
    context = _package_path(ctx, ctx.attr("context"), "context")
    path = root / src
    if not path.is_file():
        raise ctx.error(f"attribute 'src': {src} is not a file; name the Dockerfile, relative to the package")
    if not (root / context if context else root).is_dir():
        raise ctx.error(f"attribute 'context': {context or '//'} is not a folder")
    args = dict(ctx.attr("build_args"))

    def fail(message: str):
        return ctx.error(f"{src}: {message}")

    images = from_images(path.read_text(errors="replace"), args, fail, ctx.attr("target"))
    ignore = ignore_file(root, src, context)
    patterns = read_dockerignore(root / ignore) if ignore else []
    files, listed = _context_files(root, context, patterns)
    pins = {normalize(i.ref): i.digest for i in ctx._workspace.images.values() if i.digest}
    bases = {}
    for ref, platform in sorted(images.items()):
        try:
            full = normalize(ref)
        except ValueError as e:
            raise fail(f"FROM {ref}: {e}") from None
        bases[ref] = BaseImage(f"FROM {ref}" + (f" --platform={platform}" if platform else ""), ref,
                               pins.get(full))
    ctx.secret_mounts()  # records the declared secrets and agents: RUN --mount lines use them by id
    build = DockerfileBuild(dockerfile=src, context=context, ignore_file=ignore, target=ctx.attr("target"),
                            build_args=args, bases=bases, context_files=files,
                            base_platforms={ref: p for ref, p in images.items() if p},
                            labels=dict(ctx.attr("labels")), looked_for=_ignore_candidates(src, context),
                            listed_dirs=listed)
    return [build, *image_providers(ctx)]


def normalize(ref: str) -> str:
    from buildkit.llb import normalize_image_ref

    return normalize_image_ref(ref)


dockerfile = mb.rule(
    implementation=_dockerfile,
    doc="An existing Dockerfile built by BuildKit's Dockerfile frontend, as `docker buildx build` builds it.",
    attrs={
        "src": mb.attr.string("The Dockerfile, relative to the package (`//path` from the workspace root).",
                              default="Dockerfile"),
        "context": mb.attr.string("The build context folder, relative to the package (`//` is the workspace "
                                  "root); its `.dockerignore` (or `<Dockerfile>.dockerignore`) applies.",
                                  default="."),
        "target": mb.attr.string("The stage to build (`--target`); empty: the last."),
        "build_args": mb.attr.string_dict("`ARG` values (`--build-arg`); part of the key."),
        "secrets": mb.attr.string_dict("Build secrets for the Dockerfile's `RUN --mount=type=secret,id=ID` "
                                       "lines: id -> `env:NAME` or `file:PATH` (relative to the workspace root); "
                                       "`--secret` overrides the source. Their values are not in the key."),
        "ssh": mb.attr.string_list("SSH agents for `RUN --mount=type=ssh` lines, by id (`default`: "
                                   "$SSH_AUTH_SOCK; `--ssh ID=SOCKET` gives another)."),
        **{k: v for k, v in mb.image_attrs().items() if k in _IMAGE_ATTRS},
    },
)
