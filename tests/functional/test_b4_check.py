"""`qseries b4-check` driven by b4 review's own check runners
(b4.review.checks.run_series_checks and run_perpatch_checks), as the
review TUI calls them: the command line as b4 config would name it, the
checkout as topdir, B4_TRACKING_FILE as b4 writes it.

The reviewer's checkout is a clone of the Debian base tree (its commit
is the base's own; each test has its own, sparse: git's objects, the
top files and qapi/, about 70 MB), with series/yank-doc's patch on a
branch; the thread is git format-patch's, and the review branch is made
by b4 itself (create_review_branch) from that thread, its tracking data
read back by b4 (load_tracking) and dumped as the TUI does.  The series runs
on the work dir's base, whose build is reused.

Cost on the 2-core machine, the work dir warm (QSERIES_WORKDIR set to
it), measured 2026-12-06: the clones about 2 s; the per-patch checks
under a second a patch; a series check that runs (import, generate,
check, the control's and the series' builds of a few ninja steps, three
qtests on each) about 30 s, made twice (the review branch, the lone
patch); one that import refuses 3 s: 71 s for the module, pytest's
start and the base's fixture included.  A run that waits for the work
dir's lock (another qseries run) takes longer.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import sys
from email.message import EmailMessage
from pathlib import Path

import b4
import b4.review
import pytest
from b4.review import checks

from ..conftest import GIT_ENV, REPO, git

pytestmark = pytest.mark.qemu

# The venv's qseries, by its absolute path, as a reviewer's git config
# would name it.
QSERIES = Path(sys.executable).parent / "qseries"
SERIES_CMD = f"{QSERIES} b4-check"
PERPATCH_CMD = f"{QSERIES} b4-check --per-patch"
YANK_PATCH = next((REPO / "series/yank-doc/patches/v1").glob("v1-0001-*.patch"))
CHANGE_ID = "20261206-yank-doc-b4check"
BRANCH = f"b4/review/{CHANGE_ID}"
# What b4 itself makes of a check command that broke the protocol.
B4_OWN_FAILURES = ("invalid JSON output", "exited with error code")


def message(path: Path) -> EmailMessage:
    """A mail as b4 parses it."""
    msg = email.message_from_bytes(path.read_bytes(), policy=b4.emlpolicy)
    assert isinstance(msg, EmailMessage)
    return msg


def msgid(msg: EmailMessage) -> str:
    return str(msg["Message-Id"]).strip("<> ")


def only_entry(results: list[dict[str, str]]) -> dict[str, str]:
    """qseries' one entry, and no failure b4 made up for it."""
    assert len(results) == 1, results
    entry = results[0]
    assert entry["tool"] == "qseries", entry
    assert not entry["summary"].startswith(B4_OWN_FAILURES), entry
    return entry


def findings(entry: dict[str, str]) -> dict[str, dict[str, str]]:
    """The entry's details: the findings b4's TUI lists, by check."""
    found = json.loads(entry["details"])
    assert isinstance(found, list)
    return {f["context"]: f for f in found}


def untouched(tree: Path) -> tuple[str, str, str, str]:
    """What qseries must not change in the checkout: refs, HEAD, the
    index and work tree, the objects."""
    return (
        git(tree, "for-each-ref"),
        git(tree, "rev-parse", "HEAD"),
        git(tree, "status", "--porcelain"),
        git(tree, "count-objects"),
    )


@pytest.fixture
def b4_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, real_workdir: Path) -> None:
    """b4 as in a test: no network, its data in tmp_path; git with a fixed
    identity; qseries on the shared work dir (its base's build is warm)."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "b4-data"))
    monkeypatch.setenv("QSERIES_WORKDIR", str(real_workdir))
    monkeypatch.setattr(b4, "can_network", False)


@pytest.fixture(scope="module")
def pristine(
    real_base: dict[str, object], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The reviewer's QEMU checkout: a clone of the Debian base tree, with
    the yank-doc patch on branch topic and a patch checkpatch refuses
    on branch bad (both on the base)."""
    tree = tmp_path_factory.mktemp("b4-check") / "qemu"
    root = str(real_base["root"])
    git(tree.parent, "clone", "-q", "--no-hardlinks", "--sparse", root, str(tree))
    git(tree, "sparse-checkout", "add", "qapi")
    git(tree, "checkout", "-q", "-b", "topic")
    git(tree, "am", "-q", str(YANK_PATCH))
    git(tree, "checkout", "-q", "-b", "bad", "HEAD~1")
    yank = tree / "qapi" / "yank.json"
    yank.write_text(yank.read_text() + "# trailing blank \n")
    git(tree, "commit", "-q", "-s", "-a", "-m", "qapi/yank: Add a comment")
    git(tree, "checkout", "-q", "topic")
    return tree


@pytest.fixture
def checkout(
    b4_env: None, pristine: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A test's own copy of the checkout, where b4 adds its review branch;
    the test runs in it, as b4 does (b4's git commands name the
    repository, and take the current directory as its work tree)."""
    tree = tmp_path / "qemu"
    git(tmp_path, "clone", "-q", "--no-hardlinks", "--sparse", str(pristine), str(tree))
    git(tree, "sparse-checkout", "add", "qapi")
    assert git(tree, "branch", "--show-current").strip() == "topic"
    git(tree, "branch", "-q", "bad", "origin/bad")
    monkeypatch.chdir(tree)
    return tree


def format_patch(tree: Path, rng: str, out: Path, *more: str) -> list[Path]:
    """git format-patch of rng, threaded, addressed as the yank-doc patch
    is (to the maintainers get_maintainer.pl names)."""
    head = message(YANK_PATCH)
    git(
        tree,
        "format-patch",
        "-q",
        "--thread",
        f"--to={head['To']}",
        f"--cc={head['Cc']}",
        "-o",
        str(out),
        *more,
        rng,
    )
    files = sorted(out.iterdir())
    for f in files:
        text = f.read_text()
        text = text.replace("*** SUBJECT HERE ***", "qapi/yank: Document it")
        f.write_text(text.replace("*** BLURB HERE ***", "The values of the type."))
    return files


def review_branch(tree: Path, mails: list[Path]) -> Path:
    """b4's review branch of the thread, made by b4; the tracking file
    as the TUI writes it for a check command."""
    lmbx = b4.LoreMailbox()
    for path in mails:
        lmbx.add_message(message(path))
    lser = lmbx.get_series(codereview_trailers=False)
    assert lser is not None and lser.complete
    git(tree, "fetch", "-q", ".", "topic")  # what b4 applied: FETCH_HEAD
    base = git(tree, "rev-parse", "topic~1").strip()
    b4.review.create_review_branch(
        str(tree), BRANCH, base, lser, "https://lore.example/r/%s", "%s"
    )
    _, tracking = b4.review.load_tracking(str(tree), BRANCH)
    path = tree.parent / "b4-tracking.json"
    path.write_text(json.dumps(tracking, indent=2))
    return path


def test_per_patch_answers_each_patch(checkout: Path, tmp_path: Path) -> None:
    good = format_patch(checkout, "topic~1..topic", tmp_path / "good")[0]
    bad = format_patch(checkout, "bad~1..bad", tmp_path / "bad")[0]
    tracking = review_branch(checkout, [good])
    before = untouched(checkout)
    patches = [(msgid(message(p)), message(p)) for p in (good, bad)]
    found = checks.run_perpatch_checks(
        patches,
        [PERPATCH_CMD],
        str(checkout),
        extra_env={"B4_TRACKING_FILE": str(tracking)},
    )
    clean = only_entry(found[patches[0][0]])
    assert clean["status"] == "pass", clean
    assert clean["summary"].endswith(": 5 passed, 0 skipped"), clean
    assert findings(clean)["checkpatch"]["status"] == "pass"
    dirty = only_entry(found[patches[1][0]])
    assert dirty["status"] == "fail", dirty
    assert "1 of 5 failed: checkpatch" in dirty["summary"]
    checkpatch = findings(dirty)["checkpatch"]
    assert checkpatch["status"] == "fail"
    assert "ERROR: trailing whitespace" in checkpatch["description"]
    assert findings(dirty)["signoff"]["status"] == "pass"
    assert untouched(checkout) == before


def test_bad_input_is_a_failed_entry_not_a_broken_protocol(
    checkout: Path, tmp_path: Path
) -> None:
    not_a_mail = EmailMessage()
    not_a_mail.set_content("no headers, no diff\n")
    found = checks.run_perpatch_checks(
        [("x@example.org", not_a_mail)], [PERPATCH_CMD], str(checkout)
    )
    entry = only_entry(found["x@example.org"])
    assert entry["status"] == "fail"
    assert entry["summary"].startswith("stdin is not a mail")
    # A cover letter alone, and b4 tracks nothing of it: nothing to import.
    cover = format_patch(checkout, "topic~1..topic", tmp_path / "t", "--cover-letter")
    results = checks.run_series_checks(
        (msgid(message(cover[0])), message(cover[0])), [SERIES_CMD], str(checkout)
    )
    entry = only_entry(results)
    assert entry["status"] == "fail"
    assert entry["summary"].startswith("only the cover letter is at hand")


def test_series_check_of_the_review_branch(checkout: Path, tmp_path: Path) -> None:
    base = f"--base={git(checkout, 'rev-parse', 'topic~1').strip()}"
    mails = format_patch(
        checkout, "topic~1..topic", tmp_path / "thread", "--cover-letter", base
    )
    tracking = review_branch(checkout, mails)
    before = untouched(checkout)
    cover = message(mails[0])
    entry = only_entry(
        checks.run_series_checks(
            (msgid(cover), cover),
            [SERIES_CMD],
            str(checkout),
            extra_env={"B4_TRACKING_FILE": str(tracking)},
        )
    )
    assert entry["status"] == "pass", entry
    assert entry["summary"].startswith(f"v1 of branch {BRANCH} on QEMU 10.2.2")
    assert re.search(r": \d+ passed, \d+ skipped$", entry["summary"]), entry
    # The series was checked, built and tested with its control.
    found = findings(entry)
    for name in (
        "checkpatch",
        "qapi",
        "control qtest-x86_64/qmp-cmd-test",
        "qtest-x86_64/qmp-cmd-test",
    ):
        assert found[name]["status"] == "pass", found.get(name)
    report = Path(entry["url"].removeprefix("file://"))
    assert entry["url"].startswith("file:///") and report.name == "summary.md"
    assert "**PASSED**" in report.read_text()
    assert untouched(checkout) == before


def test_series_check_of_a_lone_patch(checkout: Path, tmp_path: Path) -> None:
    """No tracking data: the message b4 gives (a series of one patch,
    with no cover letter) is the thread."""
    base = f"--base={git(checkout, 'rev-parse', 'topic~1').strip()}"
    patch = format_patch(checkout, "topic~1..topic", tmp_path / "one", base)[0]
    # One Message-Id from run to run: one folder of the work dir.
    text = re.sub(
        r"(?m)^Message-Id: .*$", f"Message-Id: <{CHANGE_ID}@example>", patch.read_text()
    )
    patch.write_text(text)
    mail = message(patch)
    before = untouched(checkout)
    entry = only_entry(
        checks.run_series_checks((msgid(mail), mail), [SERIES_CMD], str(checkout))
    )
    assert entry["status"] == "pass", entry
    assert entry["summary"].startswith("v1 of the message on QEMU 10.2.2")
    assert "**PASSED**" in Path(entry["url"].removeprefix("file://")).read_text()
    assert untouched(checkout) == before


def test_series_check_of_the_thread_b4_keeps(checkout: Path, tmp_path: Path) -> None:
    """Tracking data whose review branch is gone: the thread b4 stored in
    the checkout is imported.  Here a patch made on top of the yank-doc
    one that names the bare base as its base-commit: import refuses it,
    and the entry is that refusal (nothing is built)."""
    base = git(checkout, "rev-parse", "topic~1").strip()
    git(checkout, "checkout", "-q", "-b", "later", "topic")
    yank = checkout / "qapi" / "yank.json"
    yank.write_text(yank.read_text().replace("# @chardev:", "# @chardev: A chardev"))
    git(checkout, "commit", "-q", "-s", "-a", "-m", "qapi/yank: Say more")
    later = format_patch(checkout, "topic..later", tmp_path / "later", f"--base={base}")
    good = format_patch(checkout, "topic~1..topic", tmp_path / "good")
    git(checkout, "checkout", "-q", "topic")
    review_branch(checkout, good)
    blob = b4.review.tracking._store_thread_blob(
        str(checkout), CHANGE_ID, [message(p) for p in later]
    )
    assert blob is not None
    _, tracking = b4.review.load_tracking(str(checkout), BRANCH)
    assert tracking["series"]["thread-blob"] == blob
    git(checkout, "checkout", "-q", "topic")
    git(checkout, "branch", "-q", "-D", BRANCH)
    path = tmp_path / "tracking.json"
    path.write_text(json.dumps(tracking))
    before = untouched(checkout)
    cover = message(good[0])
    entry = only_entry(
        checks.run_series_checks(
            (msgid(cover), cover),
            [SERIES_CMD],
            str(checkout),
            extra_env={"B4_TRACKING_FILE": str(path)},
        )
    )
    assert entry["status"] == "fail", entry
    assert "/thread.mbox: patch 1/1 'qapi/yank: Say more'" in entry["summary"]
    assert "on QEMU 10.2.2" in entry["summary"]
    assert untouched(checkout) == before
