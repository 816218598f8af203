"""The ai-mono API service (stdlib http.server + py_core)."""

__version__ = "0.1.0"
