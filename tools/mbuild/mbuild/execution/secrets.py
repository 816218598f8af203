"""Build secrets and SSH agents of one solve: where each comes from, and
keeping their values out of everything mbuild shows.

A target declares what its steps use (``secrets = {"npmrc": "file:.npmrc"}``,
``ssh = ["default"]``; analysis records them in ``TargetInfo.secrets`` and
``.ssh``). A solve serves the declarations of every target whose steps it
runs (the target and the stages it builds on), each from the command line's
``--secret``/``--ssh`` when given there (buildx's syntax), else from the
declared source. BuildKit reads them over the session when a step runs: they
are never in the LLB, a key, a layer or the action store.

A step may still print a secret. Every line of progress output and every
log line of a failure report passes through :class:`Redactor`, which
replaces the values of the solve's secrets with ``****``, as CI systems mask
theirs. Values shorter than :data:`MIN_REDACTED` characters are not masked
(they would hide ordinary words of the log); multi-line values are masked
line by line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import ConfigError

MIN_REDACTED = 4
MASK = "****"


def declared_sources(infos: Iterable, root: Path, cli_secrets: Mapping, cli_ssh: Mapping) -> tuple[dict, dict]:
    """The ``SolveRequest`` secrets and SSH agents for the steps of ``infos``
    (TargetInfos), by id: the command line's first, else the declarations
    (``file:`` paths relative to ``root``)."""
    from buildkit.secrets import SecretSource
    from buildkit.sshforward import SSHAgent

    secrets: dict[str, SecretSource] = {}
    agents: dict[str, SSHAgent] = {}
    declared: dict[str, tuple[str, object]] = {}
    for info in infos:
        for sid, spec in info.secrets.items():
            seen = declared.get(sid)
            if seen is not None and seen[0] != spec and sid not in cli_secrets:
                raise ConfigError(f"{info.location}: {info.label}: secret {sid!r} is {spec!r} here but "
                                  f"{seen[0]!r} in {seen[1]}, built in the same solve; use one source, or give "
                                  f"--secret id={sid},src=… for both")
            declared[sid] = (spec, info.label)
            if sid in cli_secrets:
                secrets[sid] = cli_secrets[sid]
                continue
            kind, _, where = spec.partition(":")
            if kind == "env":
                secrets[sid] = SecretSource(sid, env=where)
            else:
                path = Path(where).expanduser()
                secrets[sid] = SecretSource(sid, file=str(path if path.is_absolute() else root / path))
        for aid in info.ssh:
            if aid in cli_ssh:
                agents[aid] = cli_ssh[aid]
            elif aid == "default":
                agents[aid] = SSHAgent()
            else:
                raise ConfigError(f"{info.location}: {info.label}: SSH agent {aid!r} is not given; run with "
                                  f"--ssh {aid}=/path/to/agent.sock")
    return secrets, agents


class Redactor:
    """Masks secret values in text shown to the user."""

    def __init__(self, values: Iterable[bytes]) -> None:
        words: set[str] = set()
        for value in values:
            for line in value.decode("utf-8", "replace").splitlines():
                line = line.strip()
                if len(line) >= MIN_REDACTED:
                    words.add(line)
        self._words = sorted(words, key=len, reverse=True)  # a longer value first: no half-masked ones

    def __bool__(self) -> bool:
        return bool(self._words)

    def text(self, text: str) -> str:
        for word in self._words:
            if word in text:
                text = text.replace(word, MASK)
        return text

    def event(self, event):
        """A progress event with its log line or error text masked."""
        for name in ("line", "error"):
            value = getattr(event, name, None)
            if isinstance(value, str):
                masked = self.text(value)
                if masked != value:
                    event = dataclasses.replace(event, **{name: masked})
        return event

    def error(self, err: BaseException) -> BaseException:
        """A solve error with its message, command and log tail masked (in place)."""
        from buildkit.errors import SolveError

        if isinstance(err, SolveError):
            err.error = self.text(err.error)
            err.command = self.text(err.command) if err.command else err.command
            err.log_tail = [self.text(line) for line in err.log_tail]
            err.args = tuple(self.text(a) if isinstance(a, str) else a for a in err.args)
        return err


def secret_values(sources: Mapping) -> list[bytes]:
    """The current values of ``sources`` (SecretSource by id), for masking.

    Each is checked before it is read (``SecretSource.check`` raises
    ``SecretError``): a FIFO, a device or a file over BuildKit's limit is
    refused, never read into memory."""
    out = []
    for source in sources.values():
        source.check()
        data = source.read()
        if data:
            out.append(data)
    return out
