"""check on Debian's real QEMU: mails as mail clients send them (base64,
quoted-printable), and QEMU's qapi-gen.py leaving out the event's file."""

from __future__ import annotations

import email
import email.encoders
import email.generator
import email.message
import email.policy
import json
import shutil
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest

from ..conftest import REPO, RunCli

pytestmark = pytest.mark.qemu

PATCHES = REPO / "patches" / "v1"


@pytest.fixture(scope="module")
def base_root(real_base: dict[str, object]) -> Path:
    return Path(str(real_base["root"]))


def reencode(data: bytes, encode: Callable[[email.message.Message], None]) -> bytes:
    """The mail with its body in another transfer encoding, as the email
    package writes it."""
    policy = email.policy.compat32.clone(linesep="\n")
    message = email.message_from_bytes(data, policy=policy)
    body = message.get_payload(decode=True)
    assert isinstance(body, bytes)
    del message["Content-Transfer-Encoding"]
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = 'text/plain; charset="utf-8"'
    message.set_payload(body)
    encode(message)
    out = BytesIO()
    email.generator.BytesGenerator(out, mangle_from_=False, policy=policy).flatten(
        message, unixfrom=True
    )
    return out.getvalue()


@pytest.mark.parametrize(
    "encode", [email.encoders.encode_base64, email.encoders.encode_quopri]
)
def test_encoded_mails_pass(
    run_cli: RunCli,
    real_workdir: Path,
    base_root: Path,
    tmp_path: Path,
    encode: Callable[[email.message.Message], None],
) -> None:
    mails = [reencode(p.read_bytes(), encode) for p in sorted(PATCHES.glob("*.patch"))]
    marker = b"Content-Transfer-Encoding: " + (
        b"base64" if encode is email.encoders.encode_base64 else b"quoted-printable"
    )
    assert all(marker in m for m in mails)
    assert all(b"\ndiff --git " not in m for m in mails)  # really encoded
    mbox = tmp_path / "series.mbox"
    mbox.write_bytes(b"".join(mails))
    proc = run_cli("check", "--json", "--mbox", str(mbox), workdir=real_workdir)
    assert "Traceback" not in proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    names = ("mails", "apply", "checkpatch", "maintainers", "signoff")
    assert {n: results[n]["status"] for n in names} == dict.fromkeys(names, "pass")
    assert results["checkpatch"]["detail"] == "3 patch(es): 0 errors, 0 warnings"
    assert results["maintainers"]["detail"].startswith("To/Cc include every")
    assert proc.returncode == 0, results


def test_qapi_gen_without_the_module_of_the_symbol_fails(
    base_root: Path, tmp_path: Path
) -> None:
    from qseries.ground.workdir import WorkDir
    from qseries.qemu.check import _qapi_gen

    # The tree's own qapi-gen.py on a schema that no longer includes
    # vfio.json: it succeeds, but no header it writes has the symbol.
    tree = tmp_path / "qemu"
    shutil.copytree(base_root / "qapi", tree / "qapi")
    shutil.copytree(base_root / "scripts" / "qapi", tree / "scripts" / "qapi")
    shutil.copy(base_root / "scripts" / "qapi-gen.py", tree / "scripts")
    schema = tree / "qapi" / "qapi-schema.json"
    text = schema.read_text()
    assert "{ 'include': 'vfio.json' }\n" in text
    schema.write_text(text.replace("{ 'include': 'vfio.json' }\n", ""))
    work = WorkDir(tmp_path / "work")
    symbol = "qapi_event_send_vfio_migration"
    assert _qapi_gen(tree, work, symbol, code=tree) == (
        f"qapi-gen.py did not generate {symbol}"
    )
    schema.write_text(text)
    assert _qapi_gen(tree, work, symbol, code=tree) is None
