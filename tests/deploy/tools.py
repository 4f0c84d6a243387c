"""Finding the deployment tools the tests run: on PATH or beside this interpreter.

Under CI (CI set) a missing tool fails the test; elsewhere it skips, naming the make
target that installs it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from tests.conftest import in_ci

__all__ = ["require_tool"]


def require_tool(name: str, make_target: str) -> str:
    """The path of ``name``; skip (fail under CI) when it is not installed."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        message = f"{name} is not installed (run `make {make_target}`)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so it must be", pytrace=False)
        pytest.skip(message)
    return found
