"""The two versions' wires (series.yaml's `wire:`), for the lab's unit
tests that build records by hand."""

from __future__ import annotations

from qseries.labs.vfio_migration.plan import Wire

V1 = Wire(completion="VFIO_MIGRATION", notice_event="VFIO_MIGRATION_PREPARE")
V2 = Wire(
    completion="VFIO_MIGRATION",
    notice_event="VFIO_MIGRATION",
    notice_state="pre-copy-p2p-prepare",
    announces="pre-copy-p2p",
)
