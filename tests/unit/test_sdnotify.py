"""sd_notify against a real datagram socket, as systemd provides it."""

import os
import socket
from pathlib import Path

from framepool.sdnotify import Notifier


def test_ready_reaches_the_notify_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        assert Notifier(path).ready("serving 2 workers")
        lines = server.recv(4096).decode().split("\n")
    assert "READY=1" in lines
    assert "STATUS=serving 2 workers" in lines
    assert f"MAINPID={os.getpid()}" in lines


def test_abstract_socket_address() -> None:
    name = f"framepool-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier("@" + name).stopping("draining")
        assert server.recv(4096).decode().split("\n") == ["STOPPING=1", "STATUS=draining"]


def test_without_systemd_nothing_is_sent() -> None:
    notifier = Notifier("")
    assert not notifier.enabled
    assert not notifier.ready("x")


def test_unusable_socket_turns_notifications_off(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "missing"))
    assert not notifier.status("x")
    assert not notifier.enabled
