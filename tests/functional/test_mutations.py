"""Each mutation of `qseries test` breaks the real v1 migration.c the way
it says, and in no other way.

The v1 migration.c is rendered as a reviewer would get it: the committed
patch 2 of v1 applied with git to the real base's hw/vfio/migration.c.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from qseries.core import generators, series
from qseries.core.csource import find_function
from qseries.labs.vfio_migration import vfiotest
from qseries.labs.vfio_migration.plan import plan_of

from ..conftest import REPO

MUTATIONS = plan_of(
    series.load(REPO / "series.yaml", generators.specs()).version("v1")
).test.mutations
MIGRATION_FILE = "hw/vfio/migration.c"

pytestmark = pytest.mark.qemu

SETTER = "vfio_migration_set_state"
PREPARE = "    vfio_migration_send_event(vbasedev, new_state, true);\n"
IOCTL = "ioctl(vbasedev->fd, VFIO_DEVICE_FEATURE, feature)"


@pytest.fixture(scope="module")
def patched(
    real_base: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> str:
    root = Path(str(real_base["root"]))
    out = tmp_path_factory.mktemp("v1")
    target = out / MIGRATION_FILE
    target.parent.mkdir(parents=True)
    target.write_text((root / MIGRATION_FILE).read_text())
    (patch,) = (REPO / "patches" / "v1").glob("v1-0002-*.patch")
    subprocess.run(
        ["git", "apply", f"--include={MIGRATION_FILE}", str(patch)],
        cwd=out,
        check=True,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(out.parent)},
    )
    text = target.read_text()
    assert text != (root / MIGRATION_FILE).read_text()
    return text


def mutate(text: str, name: str) -> tuple[str, str]:
    """The setter's body before and after the mutation; the rest of the
    file must be untouched."""
    mutation = next(m for m in MUTATIONS if m.name == name)
    mutated = vfiotest.apply_mutation(mutation, text)
    fn, new = find_function(text, SETTER), find_function(mutated, SETTER)
    assert mutated[: new.body[0]] == text[: fn.body[0]]
    assert mutated[new.body[1] :] == text[fn.body[1] :]
    return text[fn.body[0] : fn.body[1]], mutated[new.body[0] : new.body[1]]


def test_every_mutation_is_checked_here() -> None:
    names = {n[5:].replace("_", "-") for n in globals() if n.startswith("test_")}
    assert {m.name for m in MUTATIONS} <= names


def test_prepare_after_ioctl(patched: str) -> None:
    body, mutated = mutate(patched, "prepare-after-ioctl")
    assert mutated.count(PREPARE) == 1
    # Moved, not changed: only the prepare call's place differs...
    assert mutated.replace(PREPARE, "") == body.replace(PREPARE, "")
    # ...and it now follows the request and directly precedes the completion.
    at = mutated.index(PREPARE)
    assert mutated.index(IOCTL) < at
    assert mutated[at + len(PREPARE) :].startswith(
        "    vfio_migration_set_device_state(vbasedev, new_state);\n"
    )


def test_prepare_old_state(patched: str) -> None:
    body, mutated = mutate(patched, "prepare-old-state")
    old = PREPARE.replace("new_state, true", "migration->device_state, true")
    assert mutated.count(old) == 1 and PREPARE not in mutated
    assert mutated.replace(old, PREPARE) == body


def test_prepare_for_no_op(patched: str) -> None:
    body, mutated = mutate(patched, "prepare-for-no-op")
    assert mutated.count(PREPARE) == 1
    assert mutated.replace(PREPARE, "") == body.replace(PREPARE, "")
    at = mutated.index(PREPARE)
    assert mutated[at + len(PREPARE) :].startswith(
        "    if (new_state == migration->device_state) {\n        return 0;"
    )


RECOVER = "vfio_migration_set_device_state(vbasedev, recover_state);"
RESET = "vfio_migration_set_device_state(vbasedev, VFIO_DEVICE_STATE_RUNNING);"


def test_no_completion_on_recovery(patched: str) -> None:
    body, mutated = mutate(patched, "no-completion-on-recovery")
    assert body.count(RECOVER) == 1 and body.count(RESET) == 1
    # The recovery state is still recorded, only its completion is gone;
    # the reset's completion stays.
    assert RECOVER not in mutated and mutated.count(RESET) == 1
    assert mutated.replace("migration->device_state = recover_state;", RECOVER) == body


def test_no_completion_on_reset(patched: str) -> None:
    body, mutated = mutate(patched, "no-completion-on-reset")
    assert RESET not in mutated and mutated.count(RECOVER) == 1
    assert (
        mutated.replace(
            "vbasedev->migration->device_state = VFIO_DEVICE_STATE_RUNNING;", RESET
        )
        == body
    )


def test_unannounced_transition(patched: str) -> None:
    body, mutated = mutate(patched, "unannounced-transition")
    extra = f"    {IOCTL};\n"
    assert mutated.count(IOCTL) == body.count(IOCTL) + 1
    assert mutated.replace(extra, "", 1) == body
    # After the data fd is taken, on the success path only.
    at = mutated.index(extra)
    assert mutated.index("migration->data_fd = mig_state->data_fd;") < at
    assert mutated[at + len(extra) :].startswith("    return 0;\n\nreset_device:")
