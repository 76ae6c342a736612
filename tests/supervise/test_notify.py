"""sd_notify: a bound AF_UNIX datagram socket as NOTIFY_SOCKET sees READY, STATUS, WATCHDOG."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from anywhere_agent.health.model import Status
from anywhere_agent.supervise.notify import Notifier, _stdlib_send, default_send

if TYPE_CHECKING:
    from conftest import Node


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # A short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path is long.
    directory = tempfile.mkdtemp(prefix="aa-notify-")
    path = os.path.join(directory, "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield sock
    sock.close()
    shutil.rmtree(directory)


def received(sock: socket.socket) -> list[str]:
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return messages


def test_systemd_python_sends_ready_status_and_watchdog_to_the_bound_socket(
        node: Node, notify_socket: socket.socket) -> None:
    pytest.importorskip("systemd.daemon")
    notifier = Notifier()
    assert notifier.watchdog_seconds == 4.0
    sup = node.supervisor(notifier=notifier)
    sup.step()
    node.clock.advance(15)
    sup.step()
    msgs = received(notify_socket)
    assert msgs[0] == "WATCHDOG=1"
    status = ("STATUS=OK: all 11 checks OK; skipped unit_docker: not installed "
              "(docker_source=none)")
    assert msgs[1].splitlines() == ["READY=1", status]
    assert msgs[2] == "WATCHDOG=1"
    assert msgs[3] == status  # READY only once
    assert len(msgs) == 4


def test_the_stdlib_fallback_sends_the_same_datagrams(
        node: Node, notify_socket: socket.socket) -> None:
    notifier = Notifier(send=_stdlib_send(os.environ))
    node.ecs.mode = "hung"
    node.supervisor(notifier=notifier).step()
    msgs = received(notify_socket)
    assert msgs[0] == "WATCHDOG=1"
    ready, status = msgs[1].splitlines()
    assert ready == "READY=1"
    assert status.startswith("STATUS=WARNING: ecs_introspection: ECS agent at ")
    assert "\n" not in status and len(status) <= len("STATUS=") + 200


def test_default_send_prefers_systemd_python_when_installed() -> None:
    pytest.importorskip("systemd.daemon")
    assert default_send({}).__qualname__.startswith("default_send")


def test_watchdog_meant_for_another_process_is_not_petted(
        notify_socket: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    notifier = Notifier()
    assert notifier.watchdog_seconds is None
    notifier.watchdog()
    assert received(notify_socket) == []


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sent: list[str] = []
    notifier = Notifier(send=lambda m: bool(sent.append(m)))
    notifier.round("OK")
    notifier.watchdog()
    assert sent == []


def test_the_loop_wakes_at_least_at_half_the_watchdog_interval(
        node: Node, notify_socket: socket.socket) -> None:
    sup = node.supervisor(notifier=Notifier(send=_stdlib_send(os.environ)))
    sup.step()
    assert sup.sleep_for() == 2.0  # probes are due in 15 s, the watchdog is 4 s
    sup_no_wd = node.supervisor(notifier=Notifier(env={}))
    sup_no_wd.step()
    assert sup_no_wd.sleep_for() == 15.0


def test_stop_request_sends_stopping_and_leaves_an_unknown_state(
        node: Node, notify_socket: socket.socket) -> None:
    sup = node.supervisor(notifier=Notifier(send=_stdlib_send(os.environ)))
    stop = threading.Event()
    worker = threading.Thread(target=sup.run, args=(stop,))
    worker.start()
    first = notify_socket.recv(4096).decode()
    ready = notify_socket.recv(4096).decode()
    stop.set()
    worker.join(5)
    assert not worker.is_alive()
    assert first == "WATCHDOG=1" and ready.startswith("READY=1\n")
    assert any(m.startswith("STOPPING=1") for m in received(notify_socket))
    state = node.state()
    assert state["status"] == Status.UNKNOWN.name
    assert state["summary"] == "the supervisor stopped"
    assert Path(node.host.path(node.config.health.state_file)).stat().st_mode & 0o777 == 0o644
