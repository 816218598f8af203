"""mbuild's public rule API, one module per version.

A rule module imports one version, and nothing else of mbuild::

    from mbuild.api import v1 as mb

The version is in the import, so a rule written for ``v1`` keeps its meaning
when a ``v2`` appears beside it, and every action key records the versions
its rule's code imports. ``docs/rules.md`` is the guide for rule authors;
:mod:`mbuild.api.v1` the reference; :mod:`mbuild.api.testing` the
engine-free test harness.
"""

from __future__ import annotations

from types import ModuleType

def modules() -> dict[str, tuple[ModuleType, str]]:
    """Each importable API module's name -> (module, version), for the rule module loader."""
    from . import v1

    return {"mbuild.api.v1": (v1, v1.VERSION)}
