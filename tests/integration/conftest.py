"""The QMP tests need a built QEMU and the fake VFIO library.

`qseries test` builds both and runs these tests with QSERIES_QEMU and
QSERIES_FAKEVFIO set (and QSERIES_REQUIRE_QEMU=1, so that they fail
rather than skip when something is missing).  A plain `pytest` run skips
them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


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
