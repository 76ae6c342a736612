"""The child that holds a secret on its argv (`amazon-ssm-agent -register -code ...`) runs
contained: its own process group, dead with its parent even on kill -9, killed on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

PARENT = """
import sys
from anywhere_agent.cli.node import _terminate_as_exception
from anywhere_agent.host.gateway import Host
_terminate_as_exception()
try:
    Host("/").run(["sleep", "1000"], timeout=60, contained=True)
except KeyboardInterrupt:
    sys.exit(130)
"""


def child_of(parent: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    cmd = fh.read()
            except OSError:
                continue
            if int(fields[1]) == parent and cmd.startswith(b"sleep\x001000"):
                return int(name)
        time.sleep(0.01)
    raise AssertionError("the contained child never started")


def gone(pid: int, timeout: float = 2.0) -> bool:
    """No process, or only a zombie waiting for its reaper (it runs no more code)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except OSError:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def parent() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", PARENT])
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_child_runs_in_its_own_process_group(parent: subprocess.Popen[bytes]) -> None:
    child = child_of(parent.pid)
    assert os.getpgid(child) == child != os.getpgid(parent.pid)
    os.kill(child, signal.SIGKILL)


def test_the_child_dies_with_a_parent_killed_by_sigkill(parent: subprocess.Popen[bytes]) -> None:
    child = child_of(parent.pid)
    parent.kill()
    parent.wait()
    assert gone(child), "the child outlived its kill -9'd parent"


def test_sigterm_to_the_parent_kills_the_child_first(parent: subprocess.Popen[bytes]) -> None:
    child = child_of(parent.pid)
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=10) == 130
    assert gone(child, timeout=0.5)
