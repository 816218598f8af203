"""``mbuild``: the command line. A thin layer over :mod:`mbuild.workflow`.

Exit codes: 0 success, 1 build failure, 2 usage or configuration error.
Errors are one line (no traceback unless ``--debug``).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import click

from .errors import ConfigError, MbuildError

COMMANDS_WITH_LABELS = ("build",)


class DefaultToBuild(click.Group):
    """``mbuild //x:y`` is short for ``mbuild build //x:y``."""

    def resolve_command(self, ctx, args):
        if args and args[0] not in self.commands and args[0].startswith(("//", ":")):
            return "build", self.commands["build"], args
        return super().resolve_command(ctx, args)


@click.group(cls=DefaultToBuild, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("-C", "--directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="Run as if started in this directory.")
@click.option("--buildkit", "buildkit", metavar="ADDRESS", envvar="MBUILD_BUILDKIT",
              help="BuildKit address, overriding WORKSPACE.toml (docker://, unix://, tcp://).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="MBUILD_CACHE_DIR",
              help="Local action cache folder, overriding WORKSPACE.toml.")
@click.pass_context
def cli(ctx, debug: bool, directory: Path, buildkit: str | None, cache_dir: Path | None) -> None:
    """Bazel-style hermetic builds of container images on BuildKit."""
    ctx.obj = {"debug": debug, "cwd": directory.resolve(),
               "overrides": {"buildkit": buildkit, "cache_dir": cache_dir}}


@cli.command()
@click.argument("labels", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON record per target on stdout.")
@click.option("--progress", type=click.Choice(["auto", "tty", "plain", "json"]), default="auto",
              show_default=True, help="How to show build progress (on stderr).")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Targets solved in parallel.")
@click.option("--no-cache", is_flag=True, help="Run every step again: ignore the action cache and BuildKit's cache.")
@click.option("--remote", "remote_url", metavar="URL", envvar="MBUILD_REMOTE_CACHE",
              help="Remote cache (grpc[s]://host:port[/instance] for REAPI, http[s]://host/prefix for the "
                   "Bazel HTTP protocol), overriding WORKSPACE.toml.")
@click.option("--remote-upload/--no-remote-upload", default=None,
              help="Upload results to the remote cache (CI); laptops read only by default.")
@click.option("--affected", is_flag=True, help="Build only the targets of LABELS affected since --since.")
@click.option("--since", metavar="REV", help="Git revision to compare with (for --affected).")
@click.option("--push", is_flag=True, help="Push every image whose name names a registry (host[:port]/…), "
              "with the docker config's credentials; a registry that has the digest gets nothing.")
@click.option("--output", "-o", "outputs", multiple=True, metavar="type=oci|docker,dest=FILE",
              help="Also write each image as a tarball (dest may hold {target}); images are loaded into the "
                   "engine as always.")
@click.option("--platform", "platforms", metavar="PLATFORMS",
              help="Build for these platforms, e.g. linux/amd64,linux/arm64 (several: one image index), over "
                   "every target's `platforms` attribute.")
@click.option("--secret", "secrets", multiple=True, metavar="id=ID,src=PATH|env=VAR",
              help="Where a build secret comes from, over the targets' `secrets` sources (buildx's syntax).")
@click.option("--ssh", "ssh", multiple=True, metavar="default|ID=SOCKET",
              help="An SSH agent for steps that use one (`default`: $SSH_AUTH_SOCK).")
@click.pass_context
def build(ctx, labels, as_json: bool, progress: str, jobs: int, no_cache: bool, remote_url: str | None,
          remote_upload: bool | None, affected: bool, since: str | None, push: bool, outputs, platforms,
          secrets, ssh) -> None:
    """Build targets: LABEL is //pkg:name, :name, //pkg, //pkg/... or //..."""
    from .workflow import parse_platforms, start_daemon

    started_ns = time.time_ns()  # files changed after this are racy for the stamp
    if affected != bool(since):
        raise ConfigError("--affected and --since REV go together, e.g. mbuild build --affected --since HEAD~1 //...")
    options = _build_options(ctx.obj["cwd"], push, outputs, secrets, ssh)
    wanted_platforms = parse_platforms(platforms)
    from .loading.sandbox import discard_spare, prefork

    prefork()  # the BUILD-file worker, forked before the engine's early start runs a thread
    daemon = start_daemon(ctx.obj["cwd"], ctx.obj["overrides"]["buildkit"], wanted_platforms)
    try:
        _build(ctx, labels, as_json, progress, jobs, no_cache, remote_url, remote_upload, affected, since,
               options, wanted_platforms, started_ns, daemon)
    finally:
        discard_spare()
        if daemon is not None:
            daemon.close()


def _build(ctx, labels, as_json, progress, jobs, no_cache, remote_url, remote_upload, affected, since, options,
           wanted_platforms, started_ns, early) -> None:
    """``build``, its options checked and its daemon (``early``) started."""
    from .ui.progress import make_display
    from .workflow import affected as affected_labels
    from .workflow import execute, load, resolve_labels

    from .fastpath import eligible

    stamped = eligible(_ARGV) and not affected
    delta = None
    if stamped:
        from . import delta as one_change

        delta = one_change.plan(_ARGV, os.getcwd())
        if delta is not None and not delta.rebuild:  # the changed sources reach no reported target
            _report(*delta.report([], _summary), as_json)
            delta.record([], _summary, "", {})
            return
    loaded = load(ctx.obj["cwd"], delta.rebuild if delta else list(labels), **ctx.obj["overrides"])
    if delta is not None:
        targets = resolve_labels(loaded, delta.rebuild)
    elif affected:
        targets = affected_labels(loaded, since, labels)
        if not targets:
            click.echo(f"mbuild: nothing affected since {since}", err=True)
            return
    else:
        targets = resolve_labels(loaded, labels)
    display = make_display(progress, log_dir=loaded.workspace.output_path / "logs")
    try:
        outcomes, analysed, daemon = execute(loaded, targets, display, jobs, no_cache=no_cache,
                                             remote_url=remote_url, remote_upload=remote_upload,
                                             options=options, platforms=wanted_platforms, daemon=early)
    finally:
        display.close()
    if delta is not None and delta.covers(outcomes):
        from .workflow import key_graph

        _report(*delta.report(outcomes, _summary), as_json)
        if any(o.pushed for o in outcomes):  # a push asks the registry: never answered by a stamp
            delta.forget()
        else:
            delta.record(outcomes, _summary, str(loaded.workspace.root),
                         key_graph(analysed, str(loaded.workspace.root)))
        return
    if delta is not None:  # not the graph the stamp describes (a BUILD file edited meanwhile): this build's report
        delta.forget()
        stamped = False
    _report([o.to_json() for o in outcomes], [_summary(o, o.cached) for o in outcomes], as_json)
    if stamped and not any(o.pushed for o in outcomes):  # a push asks the registry
        from .workflow import write_noop_stamp

        write_noop_stamp(loaded, analysed, daemon, outcomes, _ARGV, [_summary(o, True) for o in outcomes],
                         started_ns)


def _report(records: list[dict], lines: list[str], as_json: bool) -> None:
    """A build's result: one JSON record per target on stdout, or one line per target on stderr."""
    if as_json:
        for record in records:
            click.echo(json.dumps(record))
    else:
        for line in lines:
            click.echo(line, err=True)


def _build_options(cwd: Path, push: bool, outputs, secrets, ssh):
    """The build's --push, --output, --secret and --ssh, checked (a bad one is a usage error)."""
    from buildkit.secrets import SecretError, SecretSource, parse_secret_specs
    from buildkit.sshforward import SSHError, parse_ssh_specs

    from .execution.build import BuildOptions
    from .execution.image_outputs import parse_output

    try:
        sources = parse_secret_specs(secrets)
        agents = parse_ssh_specs(ssh)
    except (SecretError, SSHError) as e:
        raise ConfigError(f"{'--secret' if isinstance(e, SecretError) else '--ssh'}: {e}") from None
    # A relative src is the caller's (-C DIR included), as for buildx: make it
    # absolute here; an id alone is its variable if set, else the file of that
    # name (buildx's default), which is relative to the same folder.
    sources = {sid: src.resolved() for sid, src in sources.items()}
    sources = {sid: SecretSource(sid, file=str(cwd / Path(src.file).expanduser()), env=None)
               if src.file is not None else src for sid, src in sources.items()}
    return BuildOptions(push=push, outputs=tuple(parse_output(o, cwd) for o in outputs), secrets=sources,
                        ssh=agents)


def _summary(o, cached: bool) -> str:
    what = o.image or ", ".join(o.files) or "built"
    state = "cached" if cached else f"{o.seconds:.1f}s"
    digest = f" {o.manifest_digest}" if o.manifest_digest else ""
    extra = f" [{', '.join(o.platforms)}]" if len(o.platforms) > 1 else ""
    if o.pushed:
        extra += f", pushed {o.pushed.ref}" if o.pushed.uploaded else f", {o.pushed.ref} up to date"
    extra += "".join(f", wrote {path}" for path in o.outputs)
    return f"{o.label}: {what}{digest}{extra} ({state})"


_ARGV: list[str] = []  # the command line as given, for the no-op stamp


@cli.command()
@click.argument("patterns", nargs=-1)
@click.option("--since", metavar="REV", required=True, help="Git revision to compare the working tree with.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of one label a line.")
@click.pass_context
def affected(ctx, patterns, since: str, as_json: bool) -> None:
    """List targets whose inputs differ since REV (reverse dependencies included)."""
    from .workflow import affected as affected_labels
    from .workflow import load

    patterns = list(patterns) or ["//..."]
    loaded = load(ctx.obj["cwd"], None)
    labels = affected_labels(loaded, since, patterns)
    if as_json:
        click.echo(json.dumps([str(label) for label in labels]))
    else:
        for label in labels:
            click.echo(str(label))


@cli.command()
@click.argument("label")
@click.pass_context
def explain(ctx, label: str) -> None:
    """Show a target's key inputs, and what changed since its last build."""
    from .workflow import explain_target, load, resolve_labels

    loaded = load(ctx.obj["cwd"], [label], **ctx.obj["overrides"])
    (target,) = resolve_labels(loaded, [label])[:1]
    click.echo(explain_target(loaded, target), nl=False)


@cli.command()
@click.option("--max-size", help="Only evict least recently used entries down to this size (e.g. 5GB).")
@click.pass_context
def clean(ctx, max_size: str | None) -> None:
    """Empty the local action cache (or shrink it to --max-size)."""
    from .cache.store import LocalStore
    from .loading.workspace import find_workspace, load_workspace, parse_size

    workspace = load_workspace(find_workspace(ctx.obj["cwd"]))
    store = LocalStore(ctx.obj["overrides"]["cache_dir"] or workspace.cache.dir)
    if max_size:
        limit = parse_size(max_size)
        if limit is None:
            raise ConfigError(f"--max-size {max_size!r}: use a size like 500MB or 10GB")
        freed = store.evict(limit)
    else:
        freed = store.clean()
        from .fastpath import clear_stamps

        clear_stamps()
    click.echo(f"freed {freed / 1e6:.1f} MB from {store.root}", err=True)


@cli.command()
@click.argument("expression")
@click.pass_context
def query(ctx, expression: str) -> None:
    """Print the labels an expression selects, one a line (deps, rdeps, kind…)."""
    from .query import evaluate_query, parse_query, query_patterns
    from .workflow import load

    expr = parse_query(expression)
    loaded = load(ctx.obj["cwd"], query_patterns(expr))
    for label in evaluate_query(expr, loaded.graph, loaded.current_package):
        click.echo(str(label))


@cli.command()
@click.argument("labels", nargs=-1, required=True)
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True)
@click.pass_context
def graph(ctx, labels, fmt: str) -> None:
    """Draw the dependency graph of LABELS as Graphviz dot or Mermaid."""
    from .ui.graph import render
    from .workflow import load, resolve_labels

    loaded = load(ctx.obj["cwd"], list(labels))
    roots = resolve_labels(loaded, labels)
    click.echo(render(loaded.graph, roots, fmt), nl=False)


@cli.command()
@click.pass_context
def lock(ctx) -> None:
    """Pin every base image in WORKSPACE.toml to the digest BuildKit resolves its ref to now."""
    from buildkit.llb import host_platform

    from .execution.bases import lock_digests
    from .execution.daemon import Daemon
    from .loading.workspace import find_workspace, load_workspace, write_image_digest

    root = find_workspace(ctx.obj["cwd"])
    workspace = load_workspace(root)
    daemon = Daemon(ctx.obj["overrides"]["buildkit"] or workspace.buildkit)
    images = [image for _, image in sorted(workspace.images.items())]
    try:
        digests = lock_digests(daemon.client(), images, workspace.registry_mirrors, str(host_platform()))
    finally:
        daemon.close()
    for image in images:
        if digests[image.name] != image.digest:
            write_image_digest(workspace.workspace_file, image.name, digests[image.name])
            click.echo(f"{image.name}: {image.ref}@{digests[image.name]}", err=True)


@cli.command(name="server", context_settings={"ignore_unknown_options": True})
@click.argument("action", type=click.Choice(["start", "stop", "status"]))
def server_cmd(action: str) -> None:
    """Start, stop or check the optional warm server (see README: it takes the
    imports off every build, and never answers differently)."""
    from .entry import server_command

    code = server_command([action])
    if code:
        sys.exit(code)


@cli.command(name="help")
@click.argument("rule", required=False)
@click.pass_context
def help_rule(ctx, rule: str | None) -> None:
    """Show the documentation of a rule (or list the rules): mbuild's built-ins
    and the workspace's own (WORKSPACE.toml ``rules``)."""
    from .loading.schema import render_docs
    from .workflow import rules_here

    rules = rules_here(ctx.obj["cwd"])
    if rule is None:
        for name in sorted(rules):
            r = rules[name]
            click.echo(f"{name}: {' '.join(r.schema.doc.split())} ({r.module})")
        return
    if rule not in rules:
        raise rules.unknown(rule)
    click.echo(render_docs(rules[rule].schema, str(rules[rule].location)))


def main(argv: list[str] | None = None) -> None:
    global _ARGV
    _ARGV = list(argv if argv is not None else sys.argv[1:])
    debug = "--debug" in _ARGV
    try:
        cli.main(args=argv, prog_name="mbuild", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("mbuild: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        click.echo(f"mbuild: error: {_usage_message(e)}", err=True)
        sys.exit(e.exit_code if e.exit_code else 2)
    except KeyboardInterrupt:
        click.echo("mbuild: interrupted; the solve was cancelled", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if debug:
            traceback.print_exc()
        error = _user_error(e)
        if error is None:
            click.echo(f"mbuild: internal error: {type(e).__name__}: {e} (rerun with --debug for details)", err=True)
            sys.exit(1)
        report = getattr(error, "report", None)
        click.echo(f"mbuild: error: {report() if report else error}", err=True)
        sys.exit(error.exit_code)
    sys.exit(0)


def _usage_message(e: click.ClickException) -> str:
    """Click's message, with where to read the usage when it has no hint."""
    message = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None and "did you mean" not in message.lower():
        message = f"{message.rstrip('.')}; see '{ctx.command_path} --help'"
    return message


def _user_error(e: Exception) -> MbuildError | None:
    """The error to show the user, or None for a bug (an internal error)."""
    if isinstance(e, MbuildError):
        return e
    from buildkit.errors import BuildKitError

    from .errors import from_buildkit

    return from_buildkit(e) if isinstance(e, BuildKitError) else None


if __name__ == "__main__":
    main()
