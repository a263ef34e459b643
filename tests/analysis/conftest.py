"""Shared fixtures for the statistics tests (no Django needed).

Reference data live outside the repository, in ``shared/reference-data`` beside it
(``/work/shared/reference-data`` for the repo ``/work/main``); the environment variable
READERSTUDY_REFERENCE_DATA overrides the location. A missing folder fails the tests.
"""

from __future__ import annotations

import pandas as pd
import pytest

from tests.analysis.factories import reference_data_dir


@pytest.fixture(scope="session")
def reference_csv():
    """Read a reference CSV by file name."""

    def read(name: str) -> pd.DataFrame:
        return pd.read_csv(reference_data_dir() / name)

    return read
