"""sd_notify for a Type=notify service: READY, STATUS, WATCHDOG and STOPPING messages."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Optional

LOG = logging.getLogger(__name__)

Send = Callable[[str], bool]


def _stdlib_send(env: Mapping[str, str]) -> Send:
    """sd_notify without libsystemd, for hosts whose venv lacks the optional systemd-python."""

    def send(message: str) -> bool:
        address = env.get("NOTIFY_SOCKET", "")
        if not address:
            return False
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message.encode(), address)
        except OSError as err:
            LOG.debug("sd_notify failed: %s", err)
            return False
        return True

    return send


def default_send(env: Mapping[str, str]) -> Send:
    try:
        from systemd.daemon import notify
    except ImportError:
        return _stdlib_send(env)

    def send(message: str) -> bool:
        return bool(notify(message))

    return send


def watchdog_interval(env: Mapping[str, str], pid: int) -> Optional[float]:
    """WATCHDOG_USEC in seconds when the watchdog is meant for this process, else None."""
    usec = env.get("WATCHDOG_USEC", "")
    owner = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and owner != str(pid):
        return None
    return int(usec) / 1_000_000


class Notifier:
    """Talks to systemd; every method is a no-op when NOTIFY_SOCKET is unset."""

    def __init__(self, env: Optional[Mapping[str, str]] = None, send: Optional[Send] = None,
                 pid: Optional[int] = None) -> None:
        env = os.environ if env is None else env
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self.watchdog_seconds = watchdog_interval(env, os.getpid() if pid is None else pid)
        self._send = send or default_send(env)
        self._ready = False

    def _notify(self, *lines: str) -> None:
        if self.enabled:
            self._send("\n".join(lines))

    @staticmethod
    def _status_line(text: str) -> str:
        return "STATUS=" + " ".join(text.split())[:200]

    def round(self, status_text: str) -> None:
        """After each probe round: READY=1 the first time, STATUS= every time."""
        if not self._ready:
            self._notify("READY=1", self._status_line(status_text))
            self._ready = True
        else:
            self._notify(self._status_line(status_text))

    def watchdog(self) -> None:
        if self.watchdog_seconds is not None:
            self._notify("WATCHDOG=1")

    def stopping(self, status_text: str = "stopping") -> None:
        self._notify("STOPPING=1", self._status_line(status_text))
