"""Unix sockets in a deep work dir: sun_path holds 108 bytes."""

from __future__ import annotations

import socket
from pathlib import Path

from qseries.labs.vfio_migration import vm


def test_a_short_path_is_itself(tmp_path: Path) -> None:
    path = tmp_path / "qmp.sock"
    assert vm.socket_path(path) == str(path)


def test_a_long_path_works_through_a_descriptor_of_its_directory(
    tmp_path: Path,
) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60) / "with,comma"
    deep.mkdir(parents=True)
    path = deep / "qmp.sock"
    assert len(str(path)) > 108
    name = vm.socket_path(path)
    assert name.startswith("/proc/self/fd/") and len(name) <= vm.SUN_PATH_MAX
    fd = int(name.split("/")[4])
    assert fd in vm.socket_fds()
    server = socket.socket(socket.AF_UNIX)
    client = socket.socket(socket.AF_UNIX)
    try:
        server.bind(name)
        server.listen(1)
        # The socket is where it belongs, under the long path.
        assert path.exists()
        client.connect(name)
        conn, _ = server.accept()
        conn.close()
    finally:
        client.close()
        server.close()
        vm.forget_socket_dir(deep)
    assert fd not in vm.socket_fds()


def test_option_values_double_their_commas() -> None:
    assert vm.quoted("/w/a,b/device") == "/w/a,,b/device"
