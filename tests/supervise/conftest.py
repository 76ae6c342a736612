"""Fakes for supervisor tests: a clock that moves only when told, systemd behind a fake runner."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import pytest

from anywhere_agent.config import Config, HealthConfig, SuperviseConfig
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.supervise.daemon import Supervisor
from anywhere_agent.supervise.notify import Notifier
from anywhere_agent.supervise.probes import (
    CredentialsProbe,
    IntrospectionProbe,
    PressureProbe,
    RegistrationProbe,
    UnitProbe,
)

WALL_START = 1_800_000_000.0
ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/lab/0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = WALL_START

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@dataclass
class FakeSystemd:
    """Answers `systemctl show` from `units` and records every other systemctl call."""

    units: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    on_restart: Optional[Callable[[str], None]] = None

    def set(self, unit: str, active: str = "active", sub: str = "running",
            restarts: int = 0) -> None:
        self.units[unit] = {"LoadState": "loaded", "ActiveState": active, "SubState": sub,
                            "UnitFileState": "enabled", "MainPID": "42",
                            "NRestarts": str(restarts)}

    def restarts(self, unit: str) -> int:
        return sum(1 for c in self.calls if c[:2] == ("systemctl", "--no-block")
                   and c[-1] == unit and "restart" in c)

    def __call__(self, argv: Sequence[str], *, input: Optional[bytes] = None,
                 env: Optional[Mapping[str, str]] = None,
                 timeout: Optional[float] = None) -> Result:
        argv = tuple(argv)
        if argv[:2] == ("systemctl", "show"):
            props = self.units.get(argv[2])
            if props is None:
                return Result(argv, 0, "LoadState=not-found\nActiveState=inactive\n")
            return Result(argv, 0, "".join(f"{k}={v}\n" for k, v in props.items()))
        self.calls.append(argv)
        if "restart" in argv and self.on_restart is not None:
            self.on_restart(argv[-1])
        return Result(argv, 0)


class FakeEcsAgent:
    """The introspection API as a function: healthy, hung (timeout) or unregistered."""

    def __init__(self, cluster: str = "lab") -> None:
        self.mode = "ok"
        self.cluster = cluster
        self.requests = 0

    def __call__(self, url: str, timeout: float) -> tuple[int, bytes]:
        self.requests += 1
        if self.mode == "hung":
            raise TimeoutError("timed out")
        arn = None if self.mode == "unregistered" else ARN
        return 200, json.dumps({"Cluster": self.cluster, "ContainerInstanceArn": arn,
                                "Version": "Amazon ECS Agent - v1.105.1 (*a8b3e7d3)"}).encode()


@dataclass
class Node:
    root: Path
    clock: FakeClock
    systemd: FakeSystemd
    ecs: FakeEcsAgent
    host: Host
    config: Config

    def rotate_credentials(self) -> None:
        path = self.host.path(agent_files.HOST_CREDENTIALS)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("[default]\naws_access_key_id = AKIAFAKE\n")
        os.utime(path, (self.clock.wall, self.clock.wall))

    def supervisor(self, notifier: Optional[Notifier] = None, **kwargs: Any) -> Supervisor:
        every = self.config.supervise.interval_seconds
        probes = [
            UnitProbe(self.host, "ecs", every),
            UnitProbe(self.host, "amazon-ssm-agent", every),
            UnitProbe(self.host, "docker", every, managed=False,
                      unmanaged_reason="docker_source=none"),
            IntrospectionProbe(self.config.supervise.introspection_url, self.config.cluster,
                               every, fetch=self.ecs),
            RegistrationProbe(self.host, every),
            CredentialsProbe(self.host, self.clock, every),
            PressureProbe(self.host, self.config, every, memory_percent=lambda: 20.0,
                          loadavg=lambda: (0.2, 0.2, 0.2), cpu_count=lambda: 2),
        ]
        return Supervisor(self.config, self.host, clock=self.clock, notifier=notifier,
                          probes=probes, pid=4242, **kwargs)

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            self.host.path(self.config.health.state_file).read_text())
        return data


@pytest.fixture
def node(tmp_path: Path) -> Node:
    """A healthy registered node under tmp_path: ecs and SSM active, fresh credentials."""
    clock = FakeClock()
    systemd = FakeSystemd()
    systemd.set("ecs")
    systemd.set("amazon-ssm-agent")
    host = Host(tmp_path, runner=systemd)
    config = Config(
        cluster="lab", docker_source="none",
        supervise=SuperviseConfig(interval_seconds=15.0, failure_threshold=3,
                                  max_restarts_per_hour=4, backoff_initial_seconds=30.0,
                                  backoff_max_seconds=600.0),
        health=HealthConfig(state_file="/var/lib/anywhere-agent/health.json"))
    reg = host.path(agent_files.SSM_REGISTRATION)
    reg.parent.mkdir(parents=True)
    reg.write_text(json.dumps({"ManagedInstanceID": "mi-0123456789abcdef0",
                               "Region": "us-east-1"}))
    n = Node(tmp_path, clock, systemd, FakeEcsAgent(), host, config)
    n.rotate_credentials()
    return n
