"""The Python children qseries starts import qseries, never a package
of that name in the directory qseries runs in (the series' folder)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import copy_series

PLANTED = """\
from pathlib import Path
Path({marker!r}).write_text("the series' folder ran\\n")
raise SystemExit(3)
"""


def test_generate_runs_no_qseries_package_from_its_folder(
    mini_tree: Path, tmp_path: Path
) -> None:
    series = copy_series(tmp_path / "series")
    marker = tmp_path / "marker"
    planted = series.parent / "qseries"
    planted.mkdir()
    (planted / "__init__.py").write_text(PLANTED.format(marker=str(marker)))
    (planted / "render.py").write_text("")
    # The command a user types, run from the series' folder.
    qseries = Path(sys.executable).with_name("qseries")
    proc = subprocess.run(
        [
            str(qseries),
            "generate",
            "--series",
            "v1",
            "--tree",
            str(mini_tree),
            "--output",
            "out",
        ],
        cwd=series.parent,
        env={**os.environ, "QSERIES_WORKDIR": str(tmp_path / "work")},
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert not marker.exists(), proc.stderr
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (series.parent / "out").iterdir()) == ["v1"]
