"""How rules declare their attributes, and checking a rule call against them.

A rule declares a ``RuleSchema``: its name, a doc string, and one ``Attr`` per
attribute, each with its own doc string, so ``mbuild help <rule>`` (see
``render_docs``) shows the documentation next to where it is declared::

    PYTHON_IMAGE = RuleSchema(
        name="python_image",
        doc="A container image running a Python application.",
        attrs={
            "base": Attr("string", "Name of a base image from WORKSPACE.toml [images].", mandatory=True),
            "srcs": Attr("string_list", "Source files, relative to the package."),
            "deps": Attr("label_list", "Libraries whose files are added to the image."),
        },
    )

Attribute types (Python values after ``coerce_attrs``):

* ``string``       - str
* ``string_list``  - tuple[str, ...]
* ``string_dict``  - dict[str, str]
* ``label``        - Label or None (strings are parsed relative to the package)
* ``label_list``   - tuple[Label, ...]
* ``bool``         - bool
* ``int``          - int
* ``base_image``   - str: the name of a WORKSPACE.toml ``[images]`` entry ("" = none).
  A schema fact: analysis resolves exactly the images these attributes name
  (through BuildKit) before any rule runs, and checks that each name exists.

A label attribute may also name the providers its targets must give
(``providers=(PoetryVenv,)``); analysis checks them before the rule runs.
Loading only carries them.

Every rule also has these attributes (Bazel semantics):

* ``name`` (string, mandatory) - the target name, unique in its package.
* ``visibility`` (string_list) - who may depend on the target:
  ``//visibility:private`` (the default: only targets in the same package),
  ``//visibility:public`` (everyone), ``//pkg:__pkg__`` (targets in package
  ``pkg``), ``//pkg:__subpackages__`` (``pkg`` and every package below it).
  Values are normalised to absolute label strings. ``package(default_visibility
  = [...])`` in a BUILD file changes the default for that file.
* ``tags`` (string_list) - free-form tags (e.g. ``manual``).

A value of ``None`` means "use the default".
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping, NamedTuple, get_args

from mbuild.errors import ConfigError, at, innermost_frame
from mbuild.loading.labels import Label, parse_label, validate_name

__all__ = [
    "AttrType",
    "Attr",
    "RuleSchema",
    "Location",
    "IMPLICIT_ATTRS",
    "PRIVATE",
    "PUBLIC",
    "coerce_attrs",
    "render_docs",
]

AttrType = Literal["string", "string_list", "string_dict", "label", "label_list", "bool", "int", "base_image"]
_ATTR_TYPES: tuple[str, ...] = get_args(AttrType)

PUBLIC = "//visibility:public"
PRIVATE = "//visibility:private"


class Location(NamedTuple):
    """Where something was declared: workspace-relative path and 1-based line."""

    path: str
    line: int | None

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def error(self, message: str) -> ConfigError:
        """A ConfigError ``path:line: message``."""
        return ConfigError(at(self.path, self.line, message))


_EMPTY_DEFAULTS: dict[str, Any] = {
    "string": "",
    "string_list": (),
    "string_dict": {},
    "label": None,
    "label_list": (),
    "bool": False,
    "int": 0,
    "base_image": "",
}


@dataclass(frozen=True)
class Attr:
    """One attribute of a rule.

    ``default`` None means the type's empty value ("", (), {}, None, False, 0).
    Label defaults are absolute label strings. ``providers`` (label and
    label_list only): the provider types every target named here must give.
    ``check``: a function of a value the BUILD file sets (after type
    checking) returning None, or what is wrong and what to write instead;
    reported at the target's line (``mbuild.api.checks`` has some).
    """

    type: AttrType
    doc: str
    default: Any = None
    mandatory: bool = False
    providers: tuple = ()
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.type not in _ATTR_TYPES:
            raise ValueError(f"unknown attribute type {self.type!r}; use one of {', '.join(_ATTR_TYPES)}")
        if self.providers and self.type not in ("label", "label_list"):
            raise ValueError(f"only label and label_list attributes can require providers, not {self.type}")


IMPLICIT_ATTRS: Mapping[str, Attr] = {
    "name": Attr("string", "The target name, unique within its package.", mandatory=True),
    "visibility": Attr(
        "string_list",
        "Who may depend on this target: //visibility:private (default: same package only), "
        "//visibility:public, //pkg:__pkg__ or //pkg:__subpackages__.",
        default=(PRIVATE,),
    ),
    "tags": Attr("string_list", "Free-form tags, e.g. 'manual' (skipped by //... patterns)."),
}


@dataclass(frozen=True)
class RuleSchema:
    """A rule kind: its name, documentation and declared attributes (the
    implicit ``name``, ``visibility`` and ``tags`` are added by ``all_attrs``)."""

    name: str
    doc: str
    attrs: Mapping[str, Attr] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = set(self.attrs) & set(IMPLICIT_ATTRS)
        if clash:
            raise ValueError(f"rule {self.name} must not redeclare implicit attributes {sorted(clash)}")

    @property
    def all_attrs(self) -> Mapping[str, Attr]:
        """Implicit attributes followed by the declared ones."""
        return {**IMPLICIT_ATTRS, **self.attrs}


# ---------------------------------------------------------------------------
# coercion

_DESCRIBE = {
    "string": "a string",
    "string_list": "a list of strings",
    "string_dict": "a dict of string to string",
    "label": "a label string",
    "label_list": "a list of label strings",
    "bool": "True or False",
    "int": "an integer",
    "base_image": "the name of a WORKSPACE.toml image",
}


def _type_name(value: Any) -> str:
    return {bool: "bool", int: "int", str: "string", list: "list", tuple: "tuple", dict: "dict", float: "float"}.get(
        type(value), type(value).__name__
    )


def _wrong(where: Location, attr: str, rule: str, kind: str, value: Any, detail: str = "") -> ConfigError:
    got = detail or _type_name(value)
    return where.error(f"attribute '{attr}' of {rule} must be {_DESCRIBE[kind]}, got {got}")


def _coerce(kind: str, value: Any, attr: str, rule: str, where: Location, package: str) -> Any:
    if kind == "string" or kind == "base_image":
        if not isinstance(value, str):
            raise _wrong(where, attr, rule, kind, value)
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _wrong(where, attr, rule, kind, value)
        return value
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool):
            raise _wrong(where, attr, rule, kind, value)
        return value
    if kind == "string_list":
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, attr, rule, kind, value)
        for item in value:
            if not isinstance(item, str):
                raise _wrong(where, attr, rule, kind, value, f"a list containing {_type_name(item)} {item!r}")
        return tuple(value)
    if kind == "string_dict":
        if not isinstance(value, dict):
            raise _wrong(where, attr, rule, kind, value)
        for k, v in value.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise _wrong(where, attr, rule, kind, value, f"a dict with entry {k!r}: {v!r}")
        return dict(value)
    if kind == "label":
        if not isinstance(value, str):
            raise _wrong(where, attr, rule, kind, value)
        return _label(value, attr, rule, where, package)
    if kind == "label_list":
        if not isinstance(value, (list, tuple)):
            raise _wrong(where, attr, rule, kind, value)
        labels = []
        for item in value:
            if not isinstance(item, str):
                raise _wrong(where, attr, rule, kind, value, f"a list containing {_type_name(item)} {item!r}")
            labels.append(_label(item, attr, rule, where, package))
        return tuple(labels)
    raise AssertionError(kind)


def _label(text: str, attr: str, rule: str, where: Location, package: str) -> Label:
    try:
        return parse_label(text, package)
    except ConfigError as err:
        raise where.error(f"attribute '{attr}' of {rule}: {err}") from None


def _run_check(check: Callable[[Any], str | None], value: Any, what: str, where: Location) -> str | None:
    """What ``check`` says about ``value``; a check that raises, or returns
    something other than a message or None, is a mistake in the rule code
    that declared it: reported at its line, from the target's."""
    code = getattr(check, "__code__", None)
    try:
        problem = check(value)
    except Exception as exc:  # noqa: BLE001 - rule code: name its line
        found = innermost_frame(exc, lambda f: f if f == code.co_filename else None) if code is not None else None
        line = found[1] if found else getattr(code, "co_firstlineno", None)
        place = f" at {code.co_filename}:{line}" if code is not None else ""
        text = " ".join(str(exc).split()) or "(no message)"
        raise where.error(f"{what}: its check raised {type(exc).__name__}{place}: {text}; fix the rule "
                          f"code") from None
    if problem is not None and not isinstance(problem, str):
        place = f" (at {code.co_filename}:{code.co_firstlineno})" if code is not None else ""
        raise where.error(f"{what}: its check returned {type(problem).__name__}{place}, not None or a message; "
                          f"fix the rule code")
    return problem


def _visibility(value: tuple[str, ...], rule: str, where: Location, package: str) -> tuple[str, ...]:
    result = []
    for text in value:
        label = _label(text, "visibility", rule, where, package)
        canonical = str(label)
        if label.package == "visibility":
            if canonical not in (PUBLIC, PRIVATE):
                raise where.error(
                    f"invalid visibility '{text}' of {rule}; use //visibility:public or //visibility:private"
                )
        elif label.name not in ("__pkg__", "__subpackages__"):
            raise where.error(
                f"invalid visibility '{text}' of {rule}; use //visibility:public, //visibility:private, "
                f"//pkg:__pkg__ or //pkg:__subpackages__ (package groups are not supported)"
            )
        result.append(canonical)
    if PUBLIC in result and len(set(result)) > 1 or PRIVATE in result and len(set(result)) > 1:
        raise where.error(
            f"visibility of {rule} mixes //visibility:public or //visibility:private with other values; use one"
        )
    return tuple(dict.fromkeys(result))


def coerce_attrs(
    schema: RuleSchema,
    kwargs: Mapping[str, Any],
    where: Location,
    package: str,
    default_visibility: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Check a rule call's keyword arguments against ``schema`` and return every
    attribute (declared ones filled with defaults) converted to its Python type.

    Label strings become Labels relative to ``package``. Errors are ConfigErrors
    ``where: ...`` (unknown attribute with a suggestion, missing mandatory
    attribute, wrong type, bad label, bad target name).
    """
    all_attrs = schema.all_attrs
    rule = schema.name
    for key in kwargs:
        if key not in all_attrs:
            close = difflib.get_close_matches(key, list(all_attrs), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known attributes: {', '.join(sorted(all_attrs))}"
            raise where.error(f"unknown attribute '{key}' of {rule}; {hint}")
    result: dict[str, Any] = {}
    for key, attr in all_attrs.items():
        value = kwargs.get(key)
        if value is None:
            if attr.mandatory:
                raise where.error(f"missing mandatory attribute '{key}' of {rule}; add {key} = ...")
            if key == "visibility" and default_visibility is not None:
                result[key] = default_visibility
                continue
            value = _EMPTY_DEFAULTS[attr.type] if attr.default is None else attr.default
            if value is None:
                result[key] = None
                continue
        result[key] = _coerce(attr.type, value, key, rule, where, package)
        if attr.check is not None and key in kwargs:
            problem = _run_check(attr.check, result[key], f"attribute '{key}' of {rule}", where)
            if problem:
                raise where.error(f"attribute '{key}' of {rule}: {problem}")
    name = result["name"]
    why = validate_name(name)
    if why:
        raise where.error(f"invalid name {name!r} of {rule}: {why}; name targets like \"app\" or \"python_runtime\"")
    result["visibility"] = _visibility(result["visibility"], rule, where, package)
    return result


def render_docs(schema: RuleSchema, defined_in: str = "") -> str:
    """Markdown documentation of a rule (for ``mbuild help <rule>``);
    ``defined_in`` names where the rule is declared (``rules/python.py:40``)."""
    lines = [f"# {schema.name}", "", schema.doc.strip(), ""]
    if defined_in:
        lines += [f"Defined in {defined_in}.", ""]
    lines += ["| attribute | type | default | doc |", "|---|---|---|---|"]
    for key, attr in schema.all_attrs.items():
        if attr.mandatory:
            default = "mandatory"
        else:
            value = _EMPTY_DEFAULTS[attr.type] if attr.default is None else attr.default
            default = f"`{value!r}`" if value is not None else "`None`"
        kind = attr.type
        if attr.providers:
            kind += " giving " + ", ".join(getattr(p, "__name__", str(p)) for p in attr.providers)
        doc = " ".join(attr.doc.split())
        lines.append(f"| `{key}` | {kind} | {default} | {doc} |")
    return "\n".join(lines) + "\n"
