"""mbuild rule API, version 1: everything a rule module needs, in one import.

    from mbuild.api import v1 as mb

    def _site(ctx):
        st = ctx.base("base")
        st = ctx.copy_sources(st, ctx.attr("srcs"), "/srv")
        return mb.image_result(ctx, st.with_workdir("/srv"), user="nobody")

    static_site = mb.rule(
        implementation = _site,
        doc = "A static web site served from /srv.",
        attrs = {
            "base": mb.attr.base_image("Image with a web server.", mandatory=True),
            "srcs": mb.attr.label_list("Filegroups of the site's files.", mandatory=True),
            **mb.image_attrs(),
        },
    )

The rule is named after the variable it is bound to (``static_site``); a
module listed in WORKSPACE.toml ``rules`` exports every public one.
``docs/rules.md`` is the guide; this is the reference.

Declaring
    ``rule(implementation, doc, attrs)`` declares a rule; ``attr.<type>(doc,
    ...)`` an attribute (``string``, ``string_list``, ``string_dict``,
    ``label``, ``label_list``, ``bool``, ``int``, ``base_image``), each with a
    doc string, shown by ``mbuild help RULE``, and for values a ``check``
    (``checks``: ports, port mappings, numeric owners, workspace paths). ``name``,
    ``visibility`` and ``tags`` every rule has already.

Implementing
    The implementation gets a :class:`RuleContext` and returns a list of
    providers. It is pure: no files, network, clock or environment (rule
    modules are loaded with guards; docs/rules.md says which and what they
    cannot catch). Sources, base images, dependencies' providers and
    workspace facts come through the context, and so are in the key.

Providers
    Built-in: :class:`Files`, :class:`Stage`, :class:`Image`,
    :class:`Service`, :class:`GeneratedFile`, :class:`Group`. A rule defines
    its own with :func:`provider` and its dependants read them by type:
    ``ctx.dep(label)[MyInfo]``.

LLB
    :class:`State` (``run``, ``copy``, ``mkdir``, ``with_env``…) and the
    mounts ``cache``, ``tmpfs``, ``bind``; ``scratch()``, ``merge``, ``diff``.
    Images and workspace files come from the context (``ctx.base``,
    ``ctx.source``), never from LLB sources of their own.

Keys
    Every key of a rule's targets covers the rule's code (its module and the
    workspace modules it imports), the API version, the attributes, the
    sources, the base images' digests, the dependencies' keys, the LLB, the
    platform and SOURCE_DATE_EPOCH. Nothing is bumped by hand.

Tests
    :mod:`mbuild.api.testing` analyses targets without an engine: providers,
    LLB steps and keys.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace
from typing import Any, Callable, Mapping

from buildkit.llb import State, bind, cache, diff, merge, scratch, tmpfs

from ..analysis.context import Dep, RuleContext
from ..analysis.providers import BuiltImage, Files, GeneratedFile, Group, Image, Provider, Service, Stage, provider
from ..analysis.rule import RuleDecl, code_path
from ..loading.labels import Label
from ..loading.schema import IMPLICIT_ATTRS, Attr, Location
from . import checks as _checks
from .images import image_attrs, image_result, platforms_attr, secret_attrs

Check = Callable[[Any], "str | None"]

VERSION = "v1"

__all__ = [
    "VERSION", "attr", "rule",
    "RuleContext", "Dep", "Label",
    "Provider", "provider", "Files", "Stage", "Image", "Service", "GeneratedFile", "Group", "BuiltImage",
    "State", "cache", "tmpfs", "bind", "scratch", "merge", "diff",
    "image_attrs", "image_result", "secret_attrs", "platforms_attr", "checks",
]


class AttrTypes:
    """The attribute types, ``mb.attr.string(doc, ...)`` and so on. ``doc`` is
    mandatory: ``mbuild help`` shows it. ``default`` is the value when a
    BUILD file does not set the attribute; ``mandatory=True`` makes it required.
    ``check`` (string, string_list, string_dict, int): a function of the value
    a BUILD file sets, returning None or what is wrong and what to write
    instead, reported at the target's BUILD line when it loads (``checks``
    has some: ``mb.checks.port_mappings``)."""

    def string(self, doc: str, default: str = "", mandatory: bool = False, check: Check | None = None) -> Attr:
        return Attr("string", doc, default, mandatory, check=check)

    def string_list(self, doc: str, default: tuple[str, ...] = (), mandatory: bool = False,
                    check: Check | None = None) -> Attr:
        return Attr("string_list", doc, tuple(default), mandatory, check=check)

    def string_dict(self, doc: str, default: Mapping[str, str] | None = None, mandatory: bool = False,
                    check: Check | None = None) -> Attr:
        return Attr("string_dict", doc, dict(default or {}), mandatory, check=check)

    def label(self, doc: str, default: str | None = None, mandatory: bool = False,
              providers: tuple[type, ...] = ()) -> Attr:
        """One target; ``providers``: the provider types it must give."""
        return Attr("label", doc, default, mandatory, tuple(providers))

    def label_list(self, doc: str, default: tuple[str, ...] = (), mandatory: bool = False,
                   providers: tuple[type, ...] = ()) -> Attr:
        """Targets; ``providers``: the provider types each must give."""
        return Attr("label_list", doc, tuple(default), mandatory, tuple(providers))

    def bool(self, doc: str, default: bool = False, mandatory: bool = False) -> Attr:
        return Attr("bool", doc, default, mandatory)

    def int(self, doc: str, default: int = 0, mandatory: bool = False, check: Check | None = None) -> Attr:
        return Attr("int", doc, default, mandatory, check=check)

    def base_image(self, doc: str, default: str = "", mandatory: bool = False) -> Attr:
        """The name of a WORKSPACE.toml ``[images]`` entry; ``ctx.base(attr)``
        gives its state. mbuild resolves exactly the images these name."""
        return Attr("base_image", doc, default, mandatory)


attr = AttrTypes()
checks = SimpleNamespace(**{name: getattr(_checks, name) for name in _checks.__all__})

def rule(implementation: Callable[[RuleContext], Any], doc: str, attrs: Mapping[str, Attr] | None = None) -> RuleDecl:
    """Declare a rule: ``implementation(ctx)`` returns its providers; ``doc``
    says what it makes; ``attrs`` maps each attribute name to ``attr.<type>(...)``."""
    if not callable(implementation):
        raise TypeError(f"rule(): implementation must be a function taking ctx, got {type(implementation).__name__}")
    if not isinstance(doc, str) or not doc.strip():
        raise ValueError("rule(): doc must say what the rule makes (mbuild help shows it)")
    attrs = dict(attrs or {})
    for name, value in attrs.items():
        if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
            raise ValueError(f"rule(): attribute name {name!r} must be an identifier not starting with '_'")
        if name in IMPLICIT_ATTRS:
            raise ValueError(f"rule(): attribute {name!r} is implicit (every rule has name, visibility, tags)")
        if not isinstance(value, Attr):
            raise TypeError(f"rule(): attribute {name!r} must be made with mb.attr.<type>(...), "
                            f"got {type(value).__name__}")
    caller = sys._getframe(1)
    path = code_path(caller.f_code.co_filename)
    return RuleDecl(implementation, doc, attrs, path, Location(path, caller.f_lineno))
