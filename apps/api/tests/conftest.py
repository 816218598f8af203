"""Make `api` (and, from a plain checkout, `py_core`) importable in tests."""

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parents[1]
REPO = APP_DIR.parents[1]
for path in (APP_DIR, REPO / "libs" / "py-core"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
