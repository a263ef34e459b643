"""Shared fixtures for the statistics tests (no Django needed).

Reference data live outside the repository, in ``shared/reference-data`` beside it
(``/work/shared/reference-data`` for the repo ``/work/main``); the environment variable
READERSTUDY_REFERENCE_DATA overrides the location. A missing folder fails the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

ENV_VAR = "READERSTUDY_REFERENCE_DATA"


def reference_data_dir() -> Path:
    """The reference-data folder: $READERSTUDY_REFERENCE_DATA or ../shared/reference-data."""
    configured = os.environ.get(ENV_VAR)
    folder = (
        Path(configured)
        if configured
        else Path(__file__).resolve().parents[3] / "shared" / "reference-data"
    )
    if not folder.is_dir():
        pytest.fail(f"reference data folder {folder} is missing (set {ENV_VAR})")
    return folder


@pytest.fixture(scope="session")
def reference_csv():
    """Read a reference CSV by file name."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(reference_data_dir() / name)

    return read
