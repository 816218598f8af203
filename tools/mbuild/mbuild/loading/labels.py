"""Labels and target patterns.

A *label* names one target: ``//pkg/path:name``. The package is the directory
(relative to the workspace root) holding the BUILD file; ``//:name`` is a
target in the root package. Accepted spellings, relative to the package of the
BUILD file (or CLI directory) they are written in:

* ``//pkg:name``  - absolute
* ``//pkg``       - shorthand for ``//pkg:<last component of pkg>``
* ``//:name``     - the root package
* ``:name``       - a target in the current package
* ``name``        - the same as ``:name``

A *pattern* names a set of targets (command line and ``mbuild query``):

* ``//pkg:name``                  - one target (any label form above)
* ``//pkg:all`` or ``//pkg:*``    - every target in one package
* ``//pkg/...``                   - every target in ``pkg`` and all packages below
* ``//...``                       - every target in the workspace
* ``//pkg/...:all``               - the same as ``//pkg/...``

External repositories (``@repo//...``) are not supported.
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass
from enum import Enum

from mbuild.errors import ConfigError

__all__ = [
    "Label",
    "Pattern",
    "PatternKind",
    "parse_label",
    "parse_pattern",
    "validate_package",
    "validate_name",
]

# Characters allowed in a package path and in a target name (a conservative
# subset of Bazel's: no spaces, quotes, backslashes or colons).
_PACKAGE_RE = re.compile(r"[A-Za-z0-9_\-.@+=,~]+(?:/[A-Za-z0-9_\-.@+=,~]+)*")
_NAME_RE = re.compile(r"[A-Za-z0-9_\-.@+=,~#%^$&!]+(?:/[A-Za-z0-9_\-.@+=,~#%^$&!]+)*")


@dataclass(frozen=True, order=True, slots=True)
class Label:
    """One target: ``//package:name``. Ordered by (package, name)."""

    package: str
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    def __repr__(self) -> str:
        return f"Label({str(self)!r})"

    @property
    def slug(self) -> str:
        """The label as one file-name-safe word: ``//apps/web:img`` -> ``apps-web-img``
        (``{target}`` in output file names and layer cache refs)."""
        return f"{self.package.replace('/', '-')}-{self.name}".strip("-")

    @property
    def package_label(self) -> str:
        """``//package`` (for messages)."""
        return f"//{self.package}"


@lru_cache(maxsize=1 << 16)  # pure; a large graph repeats its packages and names
def validate_package(package: str) -> str | None:
    """Return why ``package`` is not a valid package path, or None if it is."""
    if package == "":
        return None
    if not _PACKAGE_RE.fullmatch(package):
        return "package path may only contain letters, digits, '/', '_', '-', '.', '@', '+', '=', ',', '~'"
    if any(part in (".", "..") for part in package.split("/")):
        return "package path must not contain '.' or '..' components"
    return None


@lru_cache(maxsize=1 << 16)  # pure; a large graph repeats its packages and names
def validate_name(name: str) -> str | None:
    """Return why ``name`` is not a valid target name, or None if it is."""
    if name == "":
        return "target name is empty"
    if not _NAME_RE.fullmatch(name):
        return "target name contains a character that is not allowed (no spaces, quotes, ':' or '\\')"
    if any(part in (".", "..") for part in name.split("/")):
        return "target name must not contain '.' or '..' components"
    return None


LABEL_FORMS = "labels look like //pkg:name, //pkg (its target pkg) or :name (in the same package)"
PATTERN_FORMS = "patterns look like //pkg:name, :name, //pkg, //pkg:all, //pkg/... or //..."


class LabelError(ConfigError):
    """A label or pattern with bad syntax; ``why`` is what is wrong with it."""

    def __init__(self, message: str, why: str) -> None:
        super().__init__(message)
        self.why = why


def _bad(text: str, why: str, hint: str = LABEL_FORMS) -> LabelError:
    return LabelError(f"invalid label '{text}': {why}; {hint}", why)


def _bad_pattern(text: object, why: str) -> ConfigError:
    return ConfigError(f"invalid target pattern {text!r}: {why}; {PATTERN_FORMS}")


def _split_absolute(text: str, body: str) -> tuple[str, str | None]:
    """Split ``pkg:name`` / ``pkg`` (without the leading ``//``)."""
    if body.count(":") > 1:
        raise _bad(text, "more than one ':'")
    if ":" in body:
        package, name = body.split(":", 1)
        return package, name
    return body, None


def parse_label(text: str, current_package: str = "") -> Label:
    """Parse one label written in ``current_package``.

    Raises ConfigError naming ``text`` when the syntax is wrong.
    """
    if not isinstance(text, str):
        raise LabelError(f"invalid label {text!r}: expected a string; {LABEL_FORMS}", "expected a string")
    if text.startswith("@"):
        raise _bad(text, "external repositories ('@repo//...') are not supported", "use //package:name")
    if text.startswith("//"):
        package, name = _split_absolute(text, text[2:])
        if package.endswith("/"):
            raise _bad(text, "package path must not end with '/'")
        if name is None:
            if package == "":
                raise _bad(text, "'//' alone names no target", "write //:name for a root-package target")
            name = package.rsplit("/", 1)[-1]
    elif text.startswith(":"):
        package, name = current_package, text[1:]
        if ":" in name:
            raise _bad(text, "more than one ':'")
    elif ":" in text:
        raise _bad(text, "a label with a package must start with '//'", f"write //{text}")
    elif text.startswith("/"):
        raise _bad(text, "labels start with '//' or ':'")
    else:
        package, name = current_package, text
    why = validate_package(package) or validate_name(name)
    if why:
        raise _bad(text, why)
    return Label(package, name)


class PatternKind(Enum):
    """What a Pattern selects."""

    TARGET = "target"  # exactly one label
    PACKAGE = "package"  # every target in one package (:all / :*)
    RECURSIVE = "recursive"  # every target in a package and its subpackages (/...)


@dataclass(frozen=True, order=True, slots=True)
class Pattern:
    """A set of targets named on the command line or in a query.

    ``package`` is the package (or the package prefix for RECURSIVE; "" is the
    whole workspace); ``name`` is set only for TARGET.
    """

    kind: PatternKind
    package: str
    name: str | None = None

    def __str__(self) -> str:
        if self.kind is PatternKind.TARGET:
            return f"//{self.package}:{self.name}"
        if self.kind is PatternKind.PACKAGE:
            return f"//{self.package}:all"
        return f"//{self.package}/..." if self.package else "//..."

    @property
    def label(self) -> Label | None:
        """The single label of a TARGET pattern (else None)."""
        if self.kind is not PatternKind.TARGET or self.name is None:
            return None
        return Label(self.package, self.name)

    def matches_package(self, package: str) -> bool:
        """True if targets in ``package`` can match this pattern."""
        if self.kind is PatternKind.RECURSIVE:
            return self.package == "" or package == self.package or package.startswith(self.package + "/")
        return package == self.package

    def matches(self, label: Label) -> bool:
        """True if ``label`` is selected by this pattern."""
        if self.kind is PatternKind.TARGET:
            return label.package == self.package and label.name == self.name
        return self.matches_package(label.package)


_ALL_NAMES = ("all", "*", "all-targets")


def parse_pattern(text: str, current_package: str = "") -> Pattern:
    """Parse a target pattern (see the module docstring).

    Text without a leading ``//`` is relative to ``current_package`` (e.g. the
    CLI's working directory): ``...``, ``sub/...``, ``:all``, ``:name``.
    Raises ConfigError naming ``text`` on bad syntax.
    """
    if not isinstance(text, str) or not text:
        raise _bad_pattern(text, "it is empty" if text == "" else "expected a string")
    if text.startswith("@"):
        raise _bad_pattern(text, "external repositories are not supported")
    if text.startswith("//"):
        body = text[2:]
    elif text.startswith(":"):
        body = f"{current_package}{text}"
    else:
        body = f"{current_package}/{text}" if current_package else text
    pkg_part, sep, name = body.partition(":")
    if pkg_part == "..." or pkg_part.endswith("/..."):
        if sep and name not in _ALL_NAMES:
            raise _bad_pattern(text, "'...' can only be followed by ':all' or ':*'")
        prefix = pkg_part[: -len("...")].rstrip("/")
        why = validate_package(prefix)
        if why:
            raise _bad_pattern(text, why)
        return Pattern(PatternKind.RECURSIVE, prefix)
    if sep and name in _ALL_NAMES:
        why = validate_package(pkg_part)
        if why:
            raise _bad_pattern(text, why)
        return Pattern(PatternKind.PACKAGE, pkg_part)
    try:
        label = parse_label("//" + body, current_package)
    except LabelError as err:
        raise _bad_pattern(text, err.why) from None
    return Pattern(PatternKind.TARGET, label.package, label.name)
