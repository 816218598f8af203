"""Shared helpers for the ai-mono Python services."""

from py_core.health import health_payload, version_string

__version__ = "0.1.0"

__all__ = ["__version__", "health_payload", "version_string"]
