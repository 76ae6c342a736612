"""The lab's state file and the records `up` returns: what exists, written before it is made."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anywhere_agent.lab.hosts import LabHost
from anywhere_agent.lab.network import LabNet
from anywhere_agent.lab.system import ProcessRef

LOG = logging.getLogger(__name__)

STATE_ROOT = Path("/var/lib/anywhere-agent-lab")
STATE_VERSION = 1


class LabState:
    """state.json: every resource is recorded *before* it is made, so a crash leaves a map."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data
        self._lock = threading.Lock()

    @classmethod
    def new(cls, path: Path, lab: str, net: LabNet, region: str) -> LabState:
        data: dict[str, Any] = {
            "version": STATE_VERSION,
            "lab": lab,
            "region": region,
            "octet": net.octet,
            "gateway": net.gateway,
            "subnet": net.subnet,
            "created_at": time.time(),
            "phase": "creating",
            "interfaces": [],
            "netns": [],
            "mounts": [],
            "cgroups": [],
            "processes": {},
            "hosts": {},
        }
        return cls(path, data)

    @classmethod
    def load(cls, path: Path) -> LabState | None:
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            LOG.warning("state file %s unreadable (%s); cleaning by naming convention", path, exc)
            return None
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            LOG.warning("state file %s has an unknown format; cleaning by naming convention", path)
            return None
        return cls(path, data)

    def save(self) -> None:
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(self.data, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.path)

    def record(self, kind: str, value: str) -> None:
        with self._lock:
            items: list[str] = self.data.setdefault(kind, [])
            if value not in items:
                items.append(value)
        self.save()

    def set_process(self, name: str, ref: ProcessRef | None, **extra: Any) -> None:
        with self._lock:
            procs: dict[str, Any] = self.data.setdefault("processes", {})
            procs[name] = {**(ref.to_dict() if ref else {}), **extra}
        self.save()

    def set_host(self, host: LabHost) -> None:
        with self._lock:
            self.data.setdefault("hosts", {})[host.name] = host.to_dict()
        self.save()

    def set(self, key: str, value: Any) -> None:
        with self._lock:
            self.data[key] = value
        self.save()

    def process_refs(self) -> dict[str, ProcessRef]:
        out: dict[str, ProcessRef] = {}
        for name, entry in (self.data.get("processes") or {}).items():
            if isinstance(entry, dict) and "pid" in entry and "start" in entry:
                out[name] = ProcessRef.from_dict(entry)
        return out


# -- results -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostInfo:
    name: str
    ip: str
    machine: str
    netns: str
    leader_pid: int | None
    systemd: str = ""


@dataclass(frozen=True)
class LabInfo:
    """What `up` made: enough for a test or an operator to reach every part."""

    name: str
    region: str
    subnet: str
    gateway: str
    control_plane_url: str | None
    package_url: str | None
    ssh_key: Path
    state_file: Path
    hosts: tuple[HostInfo, ...]
    seconds: dict[str, float] = field(default_factory=dict)
    time_scale: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "region": self.region,
            "time_scale": self.time_scale,
            "subnet": self.subnet,
            "gateway": self.gateway,
            "control_plane_url": self.control_plane_url,
            "package_url": self.package_url,
            "ssh_key": str(self.ssh_key),
            "state_file": str(self.state_file),
            "hosts": [h.__dict__ for h in self.hosts],
            "seconds": dict(self.seconds),
        }
