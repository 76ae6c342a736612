"""What every preflight check reads: config, the host gateway, and the injected probes."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from anywhere_agent.config import Config
from anywhere_agent.host.gateway import Host
from anywhere_agent.preflight.network import Connector, tcp_connect

DiskFree = Callable[[Path], int]
MemoryTotal = Callable[[], int]


def disk_free(path: Path) -> int:
    return shutil.disk_usage(path).free


def memory_total() -> int:
    import psutil  # imported here: only preflight needs it, and it costs start-up time

    return int(psutil.virtual_memory().total)


@dataclass(frozen=True)
class PreflightContext:
    cfg: Config
    host: Host
    env: Mapping[str, str]
    euid: int
    machine: str
    network: bool = True
    connect: Connector = tcp_connect
    disk_free: DiskFree = disk_free
    memory_total: MemoryTotal = memory_total
    timeout: float = 3.0
    now: Callable[[], float] = time.time  # this host's wall clock, for the skew check
