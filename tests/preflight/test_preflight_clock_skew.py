"""Preflight reads the SSM endpoint's clock (its HTTP Date) and names a skew AWS would refuse."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Any

import pytest

from anywhere_agent.preflight import PreflightReport

NOW = 1_796_000_000.0


def answer_with_date(offset: float) -> Callable[[socket.socket], None]:
    """An HTTP endpoint whose clock is `offset` seconds from NOW (as AWS answers a HEAD)."""

    def handle(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(2)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            date = formatdate(NOW + offset, usegmt=True)
            conn.sendall(f"HTTP/1.1 404 Not Found\r\nDate: {date}\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n".encode())

    return handle


def run_against(preflight: Callable[..., PreflightReport], names: Any, servers: Any,
                make_config: Any, offset: float) -> Any:
    server = servers(answer_with_date(offset))
    names.add("ssm.lab.test", 80, server.port)
    cfg = make_config(endpoints={"ssm": "http://ssm.lab.test"})
    report = preflight(cfg, now=lambda: NOW)
    [check] = [c for c in report.checks if c.name == "clock_skew"]
    return check


@pytest.mark.parametrize("offset", [-600.0, 600.0])
def test_a_clock_ten_minutes_off_the_endpoint_fails_naming_skew_and_the_fix(
        preflight: Any, names: Any, servers: Any, make_config: Any, offset: float) -> None:
    check = run_against(preflight, names, servers, make_config, offset)
    assert check.status == "fail"
    side = "behind" if offset > 0 else "ahead of"
    assert f"10 min {side} ssm.lab.test's" in check.summary
    assert "timedatectl set-ntp true" in check.fix


def test_a_clock_within_the_window_passes(
        preflight: Any, names: Any, servers: Any, make_config: Any) -> None:
    check = run_against(preflight, names, servers, make_config, 42.0)
    assert check.status == "pass" and "within 42 s" in check.summary


def test_without_network_the_skew_check_is_skipped(preflight: Any) -> None:
    started = time.monotonic()
    report = preflight(network=False)
    [check] = [c for c in report.checks if c.name == "clock_skew"]
    assert check.status == "skip" and time.monotonic() - started < 5
