"""A guest that runs the kernel's mtty device and the QEMU under test.

The QEMU under test cannot reach a kernel VFIO driver on the host: the
mtty sample is a module the host has not loaded (and qseries loads
nothing into the host's kernel).  So qseries boots Debian's kernel in a
machine of its own (Debian's qemu-system-x86, the outer QEMU), from an
initramfs it builds around the QEMU under test: busybox, the VFIO
modules and mtty.ko, that QEMU with the libraries it loads and the
firmware it reads, /init (guest-init.sh, package data) and the
caller's script as /scenario.sh.  /init loads the modules, makes the
mdevs and runs the script, whose output comes back on the second
serial port (the results port); the first is the console, kept as a
log that every failure names.

The outer QEMU uses KVM where KVM boots this kernel, else TCG.  Whether
it does is tried once (a short boot to /init) and remembered in the
work dir for that kernel on that host.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ...ground import atomic, proc
from ...ground.console import say
from ...ground.errors import EXIT_USAGE, QSeriesError
from ...ground.workdir import WorkDir

# Debian's qemu-system-x86: the machine the guest runs in.  A fixed
# path, not PATH: a QEMU of a series' build on PATH must not be taken
# for it.
OUTER_QEMU = Path("/usr/bin/qemu-system-x86_64")
OUTER_HINT = "install Debian's qemu-system-x86 (make bootstrap)"
# The dynamic loader of x86-64 (its path is fixed by the ABI): asked,
# with --list, which libraries the QEMU under test loads.  The system's
# loader reads the program without running any of it, where ldd would
# start the program's own interpreter.
LOADER = Path("/lib64/ld-linux-x86-64.so.2")
LIST_TIMEOUT = 30.0
# What a q35 machine with -nodefaults and the qtest accelerator reads
# from its data dir (-L); the guest's copy of it is FIRMWARE_DIR.
# Without it QEMU stops ("could not load PC BIOS"); kvmvapic.bin it
# only warns about, in the guest as on the host (the +ds build has none).
FIRMWARE = ("bios-256k.bin",)
SEABIOS = Path("/usr/share/seabios")
FIRMWARE_DIR = "/usr/share/qemu"
# Where the QEMU under test and the modules are in the guest.
GUEST_QEMU = "/usr/local/bin/qemu-system-x86_64"
MODULES_DIR = "/lib/modules/qseries"
ENV_FILE = "/qseries-guest.env"
INIT = "guest-init.sh"
# The outer machine: one CPU (two once crashed the guest under TCG's
# threads), room for two QEMUs and the unpacked initramfs.
MEMORY = "2G"
CMDLINE = "console=ttyS0 panic=-1 quiet"
# What /init says on the console (guest-init.sh).
MARK = "qseries-guest: "
ERROR_MARK = "QSERIES-GUEST-ERROR: "
# Under the work dir's kernel/: one directory per guest run (the lab's
# workdir.py knows the name: it is no kernel kit).
GUEST_DIR = "guest"
# The KVM probe: a boot to /init and straight off.  The prototype's
# TCG boot reached /init in about 3 s; a KVM that works is faster, and
# one that does not aborts (a PVM host here: an assertion on the MSRs),
# stops with an emulation error, or hangs.
PROBE_TIMEOUT = 20.0
KVM_DEVICE = Path("/dev/kvm")
KVM_FAILURES = ("KVM internal error", "emulation failure", "kvm run failed")
VERDICTS = "kvm-verdicts.json"
GZIP_LEVEL = 1  # the QEMU under test is 50 MB with its debug info: speed first
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class GuestKit(Protocol):
    """What of the kernel kit (kernel.KernelKit) a guest is made of.
    A kit without mtty.ko (None) boots a guest without the mtty type."""

    @property
    def version(self) -> str: ...
    @property
    def vmlinuz(self) -> Path: ...
    @property
    def modules(self) -> tuple[Path, ...]: ...
    @property
    def mtty(self) -> Path | None: ...
    @property
    def busybox(self) -> Path: ...


class GuestError(QSeriesError):
    """The guest did not run its script to the end: it hung, panicked,
    or the outer QEMU failed."""


class GuestSetupError(GuestError):
    """/init could not set the guest up (a module, the mtty type, an mdev)."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class GuestRun:
    """One boot of the guest, from start to power-off."""

    accel: str  # "kvm" or "tcg"
    results: str  # what the script wrote to the results port, \r stripped
    console: Path  # the guest's console log, kept
    seconds: float  # wall time of the whole run
    init_seconds: float | None  # wall time until /init started
    status: int | None = None  # the script's exit status


# -- the initramfs ---------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    """One member of the initramfs: a directory (no data, no target), a
    file (data: its content, or the host file to read it from), a
    symbolic link (target), or a character device (rdev)."""

    path: str  # absolute, in the guest
    mode: int
    data: bytes | Path | None = None
    target: str | None = None
    rdev: tuple[int, int] | None = None


def _directory(path: str) -> Entry:
    return Entry(path, 0o40755)


def _file(path: str, data: bytes | Path, executable: bool = False) -> Entry:
    return Entry(path, 0o100755 if executable else 0o100644, data)


def parse_loader_list(text: str, program: Path) -> list[Path]:
    """The files the loader's --list (or ldd) output says program loads:
    each library's path and the loader itself; the vDSO is the kernel's.
    A library it could not find is an error."""
    found: list[Path] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or "statically linked" in line:
            continue
        name, arrow, where = line.partition("=>")
        if arrow:
            where = where.strip()
            if where.startswith("not found"):
                raise GuestError(
                    f"{program} needs {name.strip()}, which this system lacks",
                    "install the library it was built against",
                )
            path = where.split(" (0x", 1)[0].strip()
        else:
            path = name.split(" (0x", 1)[0].strip()
        if path.startswith("/") and Path(path) not in found:
            found.append(Path(path))
    return found


def libraries(program: Path) -> list[Path]:
    """What program loads, asked of the system's loader.

    It reads the series' build (the QEMU under test): untrusted, so in
    the run's sandbox where there is one."""
    if not LOADER.is_file():
        raise GuestError(f"{LOADER} is missing", "run qseries on x86-64 Linux")
    ran = proc.run_bounded(
        [str(LOADER), "--list", str(program)],
        {**os.environ, "LC_ALL": "C"},
        LIST_TIMEOUT,
        untrusted=True,
    )
    if ran.timed_out or ran.returncode != 0:
        said = (ran.stderr.strip().splitlines() or [f"exit {ran.returncode}"])[-1]
        raise GuestError(
            f"cannot list the libraries of {program}: {said}",
            "pass a dynamically linked QEMU built for this system",
        )
    return parse_loader_list(ran.stdout, program)


def firmware_dir(qemu: Path) -> Path:
    """Where the QEMU under test finds its firmware: its build's
    qemu-bundle data dir (build.link_firmware linked seabios there),
    else Debian's seabios."""
    for found in sorted(qemu.resolve().parent.glob("qemu-bundle/**/share/qemu")):
        if all((found / name).is_file() for name in FIRMWARE):
            return found
    if all((SEABIOS / name).is_file() for name in FIRMWARE):
        return SEABIOS
    raise GuestError(
        f"no {', '.join(FIRMWARE)} beside {qemu} nor in {SEABIOS}",
        "install Debian's seabios package",
    )


def env_file(kit: GuestKit, mdevs: int, probe: bool = False) -> str:
    """/qseries-guest.env: what /init loads and makes.  Every value is
    one qseries chose (fixed paths, module names checked by
    module_names), so none needs quoting."""
    names = [f"{MODULES_DIR}/{n}" for n in module_names(kit)]
    mtty = names.pop() if kit.mtty is not None else ""
    uuids = [mdev_uuid(i) for i in range(mdevs)]
    lines = [
        f'MODULES="{" ".join(names)}"',
        f"MTTY={mtty}",
        f'MDEV_UUIDS="{" ".join(uuids)}"',
        f"QEMU={GUEST_QEMU}",
        f"QEMU_DATA={FIRMWARE_DIR}",
        f"PROBE={1 if probe else 0}",
    ]
    return "".join(line + "\n" for line in lines)


def module_names(kit: GuestKit) -> list[str]:
    """The modules' names in the guest, in insmod order, mtty.ko last
    (if the kit has it)."""
    names = [p.name for p in _modules(kit)]
    for name in names:
        if not NAME.fullmatch(name) or not name.endswith(".ko"):
            raise GuestError(
                f"kernel module {name!r} has a name /init cannot load",
                "name the modules NAME.ko",
            )
    if len(set(names)) != len(names):
        raise GuestError("two kernel modules share a name", "name each once")
    return names


def _modules(kit: GuestKit) -> list[Path]:
    return [*kit.modules, *([kit.mtty] if kit.mtty is not None else [])]


def mdev_uuid(index: int) -> str:
    """The UUID of the index-th mdev: fixed, so that logs compare."""
    return str(uuid.UUID(int=0x51534552_4945_4000_8000_000000000000 + index + 1))


def _parents(path: str) -> Iterator[str]:
    parts = path.strip("/").split("/")[:-1]
    for i in range(1, len(parts) + 1):
        yield "/" + "/".join(parts[:i])


def initramfs_entries(
    kit: GuestKit,
    script: str,
    mdevs: int,
    qemu: Path | None,
    loaded: Sequence[Path] = (),
    firmware: Path | None = None,
    probe: bool = False,
) -> list[Entry]:
    """Every member of the guest's initramfs, parents before children.

    A probe (probe=True) has /init, busybox and the env file only: it
    boots to /init and off."""
    init = importlib.resources.files(__package__).joinpath(INIT).read_bytes()
    files = [
        _file("/init", init, executable=True),
        _file("/bin/busybox", kit.busybox, executable=True),
        _file(ENV_FILE, env_file(kit, mdevs, probe).encode()),
    ]
    if not probe:
        if qemu is None:
            raise ValueError("a guest that is no probe needs the QEMU under test")
        files.append(_file("/scenario.sh", script.encode(), executable=True))
        for path, name in zip(_modules(kit), module_names(kit), strict=True):
            files.append(_file(f"{MODULES_DIR}/{name}", path))
        files.append(_file(GUEST_QEMU, qemu, executable=True))
        for lib in loaded:
            files.append(_file(str(lib), lib, executable=True))
        if firmware is not None:
            for name in FIRMWARE:
                files.append(_file(f"{FIRMWARE_DIR}/{name}", firmware / name))
    fixed = [
        Entry("/bin/sh", 0o120777, target="busybox"),
        Entry("/dev/console", 0o20600, rdev=(5, 1)),
    ]
    dirs = ["/dev", "/proc", "/sys", "/run", "/tmp", "/root", "/sbin"]
    for entry in [*files, *fixed]:
        dirs.extend(_parents(entry.path))
    seen: set[str] = set()
    out: list[Entry] = []
    for d in sorted(set(dirs), key=lambda p: (p.count("/"), p)):
        if d not in seen:
            seen.add(d)
            out.append(_directory(d))
    return [*out, *files, *fixed]


def _header(ino: int, entry: Entry, size: int, name: bytes) -> bytes:
    major, minor = entry.rdev or (0, 0)
    fields = (ino, entry.mode, 0, 0, 1, 0, size, 0, 0, major, minor, len(name) + 1, 0)
    return b"070701" + b"".join(b"%08X" % f for f in fields)


class Sink(Protocol):
    """Where an archive is written: a file, a gzip stream."""

    def write(self, data: bytes, /) -> object: ...


def _pad(out: Sink, written: int) -> None:
    out.write(b"\0" * (-written % 4))


def write_cpio(entries: Iterable[Entry], out: Sink) -> None:
    """entries as a cpio archive in the "newc" format the kernel unpacks:
    owned by root, dated 0 (the same inputs give the same bytes)."""
    for ino, entry in enumerate([*entries, Entry("TRAILER!!!", 0)], start=1):
        if isinstance(entry.data, Path):
            data = entry.data.read_bytes()
        elif entry.data is not None:
            data = entry.data
        else:
            data = entry.target.encode() if entry.target is not None else b""
        name = entry.path.lstrip("/").encode() or b"."
        head = _header(ino if entry.mode else 0, entry, len(data), name)
        out.write(head + name + b"\0")
        _pad(out, len(head) + len(name) + 1)
        out.write(data)
        _pad(out, len(data))


def build_initramfs(entries: Sequence[Entry], path: Path) -> int:
    """Write the gzipped archive to path (whole, or not at all); its size."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("wb") as raw:
            with gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=GZIP_LEVEL, mtime=0
            ) as out:
                write_cpio(entries, out)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path.stat().st_size


# -- the outer machine -----------------------------------------------------


def outer_argv(accel: str, vmlinuz: Path, initrd: Path, results: Path) -> list[str]:
    """The outer QEMU's command line: the console on its stdout (read
    as it comes), the results port into a file."""
    for path in (vmlinuz, initrd, results):
        if "," in str(path):
            # QEMU's option syntax takes a comma for the next option.
            raise GuestError(
                f"{path} has a comma, which QEMU's options cannot hold",
                "pass --workdir DIR without commas",
            )
    cpu = ["-accel", "kvm", "-cpu", "host"]
    if accel != "kvm":
        cpu = ["-accel", "tcg", "-cpu", "max"]
    return [
        str(OUTER_QEMU),
        *cpu,
        "-smp", "1",
        "-m", MEMORY,
        "-nodefaults",
        "-display", "none",
        "-no-reboot",
        "-kernel", str(vmlinuz),
        "-initrd", str(initrd),
        "-append", CMDLINE,
        "-chardev", "stdio,id=console,signal=off",
        "-serial", "chardev:console",
        "-chardev", f"file,id=results,path={results}",
        "-serial", "chardev:results",
    ]  # fmt: skip


class _Stop(Exception):
    """Raised from a console line to end the outer QEMU early."""


@dataclass
class _Boot:
    """What one boot showed: the console, read as it came."""

    started: float
    init_seconds: float | None = None
    done: bool = False
    status: int | None = None
    kvm: bool = False  # under KVM: a KVM failure on the console ends it
    kvm_failure: str | None = None

    def line(self, text: str) -> None:
        text = text.rstrip("\r\n")
        if text.startswith(MARK + "init at") and self.init_seconds is None:
            self.init_seconds = time.monotonic() - self.started
        elif text.startswith(MARK + "scenario exited "):
            value = text.removeprefix(MARK + "scenario exited ").strip()
            self.status = int(value) if value.isdigit() else None
        elif text == MARK + "done":
            self.done = True
        if self.kvm and any(f in text for f in KVM_FAILURES):
            self.kvm_failure = text.strip()
            raise _Stop


def _boot(
    argv: Sequence[str], console: Path, timeout: float
) -> tuple[_Boot, int | None, bool]:
    """Run the outer QEMU (console into console) for at most timeout
    seconds: what the console showed, QEMU's exit status (None if it
    was stopped) and whether the time ran out.

    Not untrusted: the outer QEMU is Debian's, not the series'; the
    series' QEMU runs in the guest, behind the outer machine.  The
    sandbox would also hide /dev/kvm (bwrap's own /dev) and keeps the
    work dir's kernel/ read-only."""
    console.write_text("")
    boot = _Boot(time.monotonic(), kvm="kvm" in argv)
    try:
        code = proc.run_streaming(
            argv, {**os.environ, "LC_ALL": "C"}, timeout, console.parent, console,
            boot.line,
        )  # fmt: skip
    except proc.CommandTimeout:
        return boot, None, True
    except _Stop:
        return boot, None, False
    except FileNotFoundError:
        raise GuestError(f"{OUTER_QEMU} is not installed", OUTER_HINT) from None
    return boot, code, False


def last_meaningful(console: Path) -> str:
    """The console line that says most about how the guest ended: the
    kernel's panic line if there is one, else the last line the guest
    (not qseries, not the outer QEMU's command line) printed."""
    try:
        text = console.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no console log)"
    lines = [
        line.strip()
        for line in text.replace("\r", "").splitlines()
        if line.strip() and not line.startswith("$ ")
        and not line.startswith("qseries: stopped after")
    ]  # fmt: skip
    for line in lines:
        if "Kernel panic" in line:
            return line
    return lines[-1] if lines else "(the console is empty)"


# -- KVM or TCG ------------------------------------------------------------


def host_facts() -> dict[str, str]:
    """What decides whether KVM boots a kernel here: the host's kernel,
    its CPU, the outer QEMU."""
    model = flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                words = value.split()
                flags = " ".join(f for f in ("vmx", "svm", "hypervisor") if f in words)
    except OSError:
        pass
    try:
        st = OUTER_QEMU.stat()
        outer = f"{st.st_size}:{int(st.st_mtime)}"
    except OSError:
        outer = "missing"
    return {
        "host_kernel": os.uname().release,
        "cpu": model,
        "cpu_flags": flags,
        "outer_qemu": outer,
    }


def verdict_key(kernel_version: str, facts: dict[str, str]) -> str:
    """The cache key of a KVM verdict: the guest's kernel and the host."""
    text = json.dumps({"kernel": kernel_version, **facts}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_verdict(path: Path, key: str) -> dict[str, object] | None:
    """The verdict stored under key, if any (a damaged file holds none)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    found = data.get(key) if isinstance(data, dict) else None
    return found if isinstance(found, dict) and "usable" in found else None


def write_verdict(path: Path, key: str, verdict: dict[str, object]) -> None:
    """Store verdict under key, beside the others."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    data[key] = verdict
    atomic.write_text(path, json.dumps(data, indent=1, sort_keys=True) + "\n")


def probe_kvm(kit: GuestKit, where: Path) -> dict[str, object]:
    """Boot the kernel with KVM to /init and off, within PROBE_TIMEOUT:
    the verdict (usable, why, seconds)."""
    if not KVM_DEVICE.exists():
        return {"usable": False, "why": f"no {KVM_DEVICE}", "seconds": 0.0}
    if not os.access(KVM_DEVICE, os.R_OK | os.W_OK):
        return {"usable": False, "why": f"{KVM_DEVICE} is not ours to use",
                "seconds": 0.0}  # fmt: skip
    where.mkdir(parents=True, exist_ok=True)
    initrd = where / "initramfs.cpio.gz"
    build_initramfs(initramfs_entries(kit, "", 0, None, probe=True), initrd)
    started = time.monotonic()
    argv = outer_argv("kvm", kit.vmlinuz, initrd, where / "results.log")
    boot, code, timed_out = _boot(argv, where / "console.log", PROBE_TIMEOUT)
    seconds = round(time.monotonic() - started, 2)
    if boot.done and code == 0:
        return {"usable": True, "why": "booted to /init", "seconds": seconds}
    if boot.kvm_failure is not None:
        why = boot.kvm_failure
    elif timed_out:
        why = f"no /init within {PROBE_TIMEOUT:g} s"
    else:
        why = last_meaningful(where / "console.log")
    return {"usable": False, "why": why, "seconds": seconds}


def choose_accel(kit: GuestKit, workdir: WorkDir) -> str:
    """KVM if it boots this kernel here (tried once, remembered), else
    TCG; said in one line either way."""
    root = workdir.sub("kernel", GUEST_DIR)
    key = verdict_key(kit.version, host_facts())
    verdict = read_verdict(root / VERDICTS, key)
    if verdict is None:
        verdict = probe_kvm(kit, root / "kvm-probe")
        write_verdict(root / VERDICTS, key, verdict)
        tried = f" (tried in {verdict.get('seconds')} s)"
    else:
        tried = ""
    if verdict.get("usable") is True:
        say(f"the guest runs under KVM{tried}")
        return "kvm"
    why = verdict.get("why")
    say(f"the guest runs under TCG: KVM does not boot it here{tried}: {why}")
    return "tcg"


# -- a run -----------------------------------------------------------------


def run_in_guest(
    kit: GuestKit,
    qemu: Path,
    script: str,
    workdir: WorkDir,
    name: str,
    mdevs: int = 2,
    timeout: float = 300.0,
    *,
    accel: str | None = None,
) -> GuestRun:
    """Boot the guest, run script in it (/scenario.sh, with MDEV0..,
    QEMU, QEMU_DATA and RESULTS set), power it off; what it wrote.

    Its files are WORKDIR/kernel/guest/NAME/: the initramfs (removed
    after a run that went well), the console log (console.log) and the
    results port's output (results.log).
    accel: "kvm" or "tcg" to choose, None to use KVM where it works."""
    if not NAME.fullmatch(name):
        raise ValueError(f"guest name {name!r} is no plain file name")
    if not OUTER_QEMU.is_file():
        raise GuestError(f"{OUTER_QEMU} is not installed", OUTER_HINT)
    if not qemu.is_file():
        raise GuestError(f"{qemu} is not a QEMU binary", "build it first")
    where = workdir.sub("kernel", GUEST_DIR, name)
    console = where / "console.log"
    results = where / "results.log"
    initrd = where / "initramfs.cpio.gz"
    for old in (console, results, initrd):
        old.unlink(missing_ok=True)
    accel = accel or choose_accel(kit, workdir)

    entries = initramfs_entries(
        kit, script, mdevs, qemu, libraries(qemu), firmware_dir(qemu)
    )
    build_initramfs(entries, initrd)
    results.write_bytes(b"")
    started = time.monotonic()
    boot, code, timed_out = _boot(
        outer_argv(accel, kit.vmlinuz, initrd, results), console, timeout
    )
    seconds = time.monotonic() - started
    # Bytes, not read_text: its universal newlines would make each \r a
    # line end of its own.
    said = results.read_bytes().decode("utf-8", errors="replace").replace("\r", "")
    for line in said.splitlines():
        if line.startswith(ERROR_MARK):
            raise GuestSetupError(
                f"guest {name}: {line.removeprefix(ERROR_MARK).strip()} "
                f"(console: {console})",
                "the kernel kit may be damaged: remove it from the work dir's "
                "kernel/ to have it made anew",
            )
    if timed_out:
        raise GuestError(
            f"guest {name} did not power off within {timeout:g} s and was "
            f"stopped (console: {console})",
            "see what its script waited for in the console log",
        )
    if not boot.done:
        raise GuestError(
            f"guest {name} ended before its script did: "
            f"{last_meaningful(console)} (console: {console})",
            "see the console log",
        )
    if code != 0:
        raise GuestError(
            f"the outer QEMU of guest {name} exited with {code} (console: {console})",
            "see the console log",
        )
    initrd.unlink()  # made anew for every run; the logs stay
    return GuestRun(accel, said, console, seconds, boot.init_seconds, boot.status)
