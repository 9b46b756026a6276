"""The QMP tests need a built QEMU, the fake VFIO library and the wire
of the version under test.

`qseries test` builds both and runs these tests with QSERIES_QEMU,
QSERIES_FAKEVFIO, QSERIES_SERIES_FILE and QSERIES_VERSION set (and
QSERIES_REQUIRE_QEMU=1, so that they fail rather than skip when
something is missing).  A plain `pytest` run skips them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qseries import generators, series


def _required(name: str) -> Path:
    value = os.environ.get(name)
    if value and Path(value).exists():
        return Path(value)
    why = f"{name} is not set to an existing file; run 'qseries test'"
    if os.environ.get("QSERIES_REQUIRE_QEMU") == "1":
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def qemu() -> Path:
    return _required("QSERIES_QEMU")


@pytest.fixture(scope="session")
def fake() -> Path:
    return _required("QSERIES_FAKEVFIO")


@pytest.fixture(scope="session")
def wire() -> series.Wire:
    """What the version under test sends on QMP (series.yaml)."""
    path = _required("QSERIES_SERIES_FILE")
    name = os.environ.get("QSERIES_VERSION")
    return series.load(path, generators.specs()).version(name).wire
