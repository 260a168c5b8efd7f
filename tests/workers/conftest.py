"""Shared fixtures for the worker tests.

``data_dir`` points at the real data folder (see ``/work/shared/data/README.md``): the environment variable
``LPSTUDY_DATA_DIR`` if set, else ``<repo>/../shared/data`` if it exists; otherwise tests using it are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_data_dir() -> Path | None:
    """Return the real data directory, or None when it is absent."""
    env = os.environ.get("LPSTUDY_DATA_DIR")
    if env:
        path = Path(env)
        return path if path.is_dir() else None
    fallback = REPO_ROOT.parent / "shared" / "data"
    return fallback if fallback.is_dir() else None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real data directory; skips the test when it is not available."""
    path = find_data_dir()
    if path is None:
        pytest.skip(
            "real data not available: set LPSTUDY_DATA_DIR to the shared data folder "
            "(or place it at ../shared/data beside the repository)"
        )
    return path
