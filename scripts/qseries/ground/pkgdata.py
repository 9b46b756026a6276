"""Package data as files in the work dir, for tools that need a path.

qseries reads its own data through importlib.resources, wherever it is
installed (a wheel, a zip, a checkout).  Some of it is for tools that
take a path, not bytes: QEMU's configure takes the devices file, meson
the fake device's folder.  Those get a copy in the work dir, under
data/SHA/NAME, SHA a digest of the names and bytes copied: the path
stays the same while the data does (configure's options, and so the
build dir, stay as they are whichever install of qseries runs), and
moves when the data changes.  The copy is never written to again, and
data/ is outside what the sandbox may write.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from importlib.resources.abc import Traversable
from pathlib import Path

from .workdir import cannot_write

FOLDER = "data"
DIGITS = 16


def _files(item: Traversable, prefix: str = "") -> Iterator[tuple[str, bytes]]:
    if item.is_file():
        yield prefix + item.name, item.read_bytes()
        return
    for child in sorted(item.iterdir(), key=lambda c: c.name):
        if child.name != "__pycache__" and not child.name.startswith("."):
            yield from _files(child, f"{prefix}{item.name}/")


def materialize(root: Path, item: Traversable) -> Path:
    """item (a file or folder of package data) as a path under
    root/data/SHA/: copied there unless it already is."""
    return _placed(root, item.name, list(_files(item)))


def place(root: Path, name: str, data: bytes) -> Path:
    """data, made of package data, as the file root/data/SHA/name."""
    return _placed(root, name, [(name, data)])


def _placed(root: Path, name: str, files: list[tuple[str, bytes]]) -> Path:
    digest = hashlib.sha256()
    for path, data in files:
        digest.update(f"{path}\0{len(data)}\0".encode())
        digest.update(data)
    home = root / FOLDER / digest.hexdigest()[:DIGITS]
    dest = home / name
    if dest.exists():
        return dest
    try:
        _copy(files, root / FOLDER, home)
    except OSError as err:
        raise cannot_write(f"copy qseries' {name} to {home}", err) from err
    return dest


def _copy(files: list[tuple[str, bytes]], folder: Path, home: Path) -> None:
    """files into a new folder beside home, renamed to home whole: a run
    killed half-way leaves no half copy under the final name."""
    folder.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=folder))
    try:
        for name, data in files:
            path = partial / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        try:
            os.rename(partial, home)
        except OSError:
            if not home.is_dir():  # not another run's copy, made meanwhile
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
