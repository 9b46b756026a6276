"""The bench of import: a branch of N diff patches imported and
generated, beside git's own format-patch and am of the same range.

Issue 21 asks that import and generate of a 20-patch `diff` series take
under 5 s on 2 cores, growing linearly with the patches.  The branch is
made on a clone of the base (its objects shared, read only) in the work
dir: patch k appends a comment to the k-th C file of the tree, so that
every patch is a `diff` of one existing file.  Each size is imported
into a folder of its own and generated on the base; git format-patch
and git am of the same range are timed in the same run, so that the
figures compare on one machine at one moment.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..core import generators
from ..core import series as series_mod
from ..ground.console import say
from ..ground.gitutil import Git
from ..ground.workdir import WorkDir
from ..mail import importer
from ..qemu import generate as gen
from ..qemu.source import BaseTree

Figures = dict[str, float | int | str]

SIZES = (5, 10, 20)
GOAL_S = 5.0  # import + generate of the largest size
IDENTITY = {
    "GIT_AUTHOR_NAME": "qseries bench",
    "GIT_AUTHOR_EMAIL": "bench@example.org",
    "GIT_COMMITTER_NAME": "qseries bench",
    "GIT_COMMITTER_EMAIL": "bench@example.org",
    "GIT_AUTHOR_DATE": "2026-12-06T12:00:00+00:00",
    "GIT_COMMITTER_DATE": "2026-12-06T12:00:00+00:00",
}


def make_branch(base: BaseTree, into: Path, patches: int) -> tuple[Path, list[str]]:
    """A clone of the base with `patches` commits on it, each a comment
    added to one C file; the commits, oldest first."""
    clone = into / "qemu"
    Git(into).run("clone", "-q", "--shared", str(base.root), str(clone))
    g = Git(clone)
    g.run("checkout", "-q", "-B", "bench", base.commit)
    files = [f for f in g.run("ls-files", "--", "*.c").split("\n") if f][:patches]
    commits = []
    for k, name in enumerate(files, 1):
        path = clone / name
        path.write_bytes(path.read_bytes() + b"/* bench patch %d */\n" % k)
        g.run(
            "commit",
            "-q",
            "-a",
            "-m",
            f"bench: Patch {k}\n\nSigned-off-by: qseries bench <bench@example.org>",
            env=IDENTITY,
        )
        commits.append(g.rev("HEAD"))
    return clone, commits


def _timed(what: str, run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    seconds = time.perf_counter() - started
    say(f"bench: {what}: {seconds:.2f} s")
    return seconds


def _one_size(
    base: BaseTree, workdir: WorkDir, clone: Path, tip: str, scratch: Path, n: int
) -> Figures:
    """The figures of the first n patches."""
    g = Git(clone)
    dest = scratch / f"series-{n}"
    rng = f"{base.commit}..{tip}"
    t_import = _timed(
        f"import of {n} patches",
        lambda: importer.import_branch(workdir, clone, rng, dest),
    )
    loaded = series_mod.load(dest / "series.yaml", generators.specs())
    version = loaded.version(None)
    t_generate = _timed(
        f"generate of {n} patches",
        lambda: gen.generate(loaded, version, base, workdir),
    )
    mails = scratch / f"mails-{n}"
    t_format = _timed(
        f"git format-patch of {n} patches",
        lambda: g.run("format-patch", "-q", "-o", str(mails), rng),
    )
    g.run("checkout", "-q", "-B", f"am-{n}", base.commit)
    patches = sorted(str(p) for p in mails.glob("*.patch"))
    t_am = _timed(
        f"git am of {n} patches", lambda: g.run("am", "-q", *patches, env=IDENTITY)
    )
    both = t_import + t_generate
    return {
        f"import_k{n}_s": round(t_import, 3),
        f"import_generate_k{n}_s": round(both, 3),
        f"import_generate_k{n}_per_patch_s": round(both / n, 3),
        f"git_format_patch_k{n}_s": round(t_format, 3),
        f"git_am_k{n}_s": round(t_am, 3),
    }


def run(base: BaseTree, workdir: WorkDir, sizes: Sequence[int] = SIZES) -> Figures:
    """The import figures for each size, in one run."""
    scratch = Path(tempfile.mkdtemp(prefix="bench-import-", dir=workdir.sub("tmp")))
    figures: Figures = {}
    try:
        clone, commits = make_branch(base, scratch, max(sizes))
        per: dict[int, float] = {}
        for n in sizes:
            one = _one_size(base, workdir, clone, commits[n - 1], scratch, n)
            figures.update(one)
            per[n] = float(one[f"import_generate_k{n}_s"]) / n
        last, first = max(sizes), min(sizes)
        figures["import_generate_s"] = figures[f"import_generate_k{last}_s"]
        figures["import_generate_per_patch_s"] = round(per[last], 3)
        # 1 when the cost per patch is the same at every size (linear);
        # below 1 when a part is paid once per import.
        figures["import_per_patch_ratio"] = round(per[last] / per[first], 3)
        met = per[last] * last <= GOAL_S
        figures["import_goal"] = (
            f"import + generate of {last} patches <= {GOAL_S:g} s: "
            + ("met" if met else "NOT met")
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return figures
