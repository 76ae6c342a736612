"""Shared fixtures. `node`: a scripted node for install/status/uninstall tests: a temp root
plus a runner that plays dpkg, apt, systemctl and amazon-ssm-agent the way they behave, and
records every argv it was given."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.config import ENV_KEYS, load_config
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import detect
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import PackageSource
from anywhere_agent.secret import Secret

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
ACTIVATION_ID = "0c9a1b2c-3d4e-4f50-8a6b-7c8d9e0f1a2b"
CODE = "Sup3rSecretActivationCode"
SSM_BINARIES = ("amazon-ssm-agent", "ssm-agent-worker", "ssm-session-worker")
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


@dataclass
class Unit:
    enabled: bool = False
    active: bool = False
    restarts: int = 0  # how many times we (re)started it


@dataclass
class FakeSystem:
    root: Path
    packages: dict[str, str] = field(default_factory=dict)
    units: dict[str, Unit] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    register_error: str = ""
    next_instance: int = 1
    reloads: int = 0
    registered: set[str] = field(default_factory=set)  # what SSM knows centrally

    def __call__(self, argv: Sequence[str], *, input: bytes | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        argv = tuple(argv)
        self.calls.append(argv)
        prog = argv[0]
        if prog == "dpkg-query":
            name = argv[-1]
            if name in self.packages:
                return Result(argv, 0, f"installed {self.packages[name]}")
            return Result(argv, 1, "", f"dpkg-query: no packages found matching {name}")
        if prog == "apt-get":
            if argv[1] == "install":
                for name in argv[2:]:
                    if not name.startswith("-") and "::" not in name:
                        # pkg, pkg=VERSION (a pin) or a file pkg_VERSION_ARCH.deb.
                        base, _, pinned = Path(name).name.partition("=")
                        base, _, rest = base.partition("_")
                        self.packages[base] = pinned or rest.split("_")[0] or "1.0"
                        if base == "amazon-ssm-agent":
                            # The real package enables and starts its service, and ships
                            # the workers beside the agent (ECS Exec copies all three).
                            self.units["amazon-ssm-agent"] = Unit(True, True)
                            for binary in SSM_BINARIES:
                                path = self.root / "usr/bin" / binary
                                path.parent.mkdir(parents=True, exist_ok=True)
                                path.write_bytes(b"\x7fELF " + binary.encode())
                                path.chmod(0o755)
                        if base == "amazon-ecs-init":
                            self.units.setdefault("ecs", Unit())
                return Result(argv, 0)
            if argv[1] == "remove":
                for name in argv[2:]:
                    self.packages.pop(name, None)
                    if name == "amazon-ssm-agent":
                        self.units.pop("amazon-ssm-agent", None)
                        for binary in SSM_BINARIES:
                            (self.root / "usr/bin" / binary).unlink(missing_ok=True)
                        for empty in ("usr/bin", "usr"):
                            if (self.root / empty).is_dir() and \
                                    not any((self.root / empty).iterdir()):
                                (self.root / empty).rmdir()
                return Result(argv, 0)
            return Result(argv, 0)
        if argv[:2] == ("apt-cache", "policy"):
            # apt knows a package's candidate only once `apt-get update` fetched the index.
            fetched = any(c[:2] == ("apt-get", "update") for c in self.calls)
            return Result(argv, 0, "".join(f"{n}:\n  Installed: (none)\n  Candidate: "
                                           f"{'1.0' if fetched else '(none)'}\n"
                                           for n in argv[2:]))
        if prog == "systemctl":
            return self._systemctl(argv)
        if prog == "/usr/bin/amazon-ssm-agent":
            return self._register(argv)
        return Result(argv, 127, "", f"{prog}: command not found")

    def _systemctl(self, argv: tuple[str, ...]) -> Result:
        verb, unit = argv[1], argv[-1]
        if verb == "show":
            unit = argv[2]
            u = self.units.get(unit)
            if u is None:
                return Result(argv, 0, "LoadState=not-found\nActiveState=inactive\n")
            return Result(argv, 0, (
                f"LoadState=loaded\nActiveState={'active' if u.active else 'inactive'}\n"
                f"SubState={'running' if u.active else 'dead'}\n"
                f"UnitFileState={'enabled' if u.enabled else 'disabled'}\nMainPID=0\n"
                f"NRestarts=0\n"))
        if verb == "daemon-reload":
            self.reloads += 1
            return Result(argv, 0)
        u = self.units.setdefault(unit, Unit())
        if verb == "enable":
            u.enabled = True
            if "--now" in argv:
                u.active = True
                u.restarts += 1
        elif verb in ("start", "restart"):
            u.active = True
            u.restarts += 1
        elif verb == "stop":
            u.active = False
        elif verb == "disable":
            u.enabled = False
            if "--now" in argv:
                u.active = False
        return Result(argv, 0)

    def _register(self, argv: tuple[str, ...]) -> Result:
        if "-clear" in argv:
            return Result(argv, 0)
        if self.register_error:
            return Result(argv, 1, "", self.register_error)
        region = argv[argv.index("-region") + 1]
        mi = f"mi-{self.next_instance:017x}"
        self.next_instance += 1
        self.registered.add(mi)
        base = self.root / "var/lib/amazon/ssm"
        (base / "Vault/Store").mkdir(parents=True, exist_ok=True)
        (base / "registration").write_text(json.dumps({"ManagedInstanceID": mi,
                                                       "Region": region}))
        (base / "Vault/Store/RegistrationKey").write_text(json.dumps({"instanceID": mi,
                                                                      "region": region}))
        creds = self.root / "root/.aws/credentials"
        creds.parent.mkdir(parents=True, exist_ok=True)
        creds.write_text("[default]\naws_access_key_id = AKIALAB\n"
                         "aws_secret_access_key = s3cr3t\naws_session_token = tok\n")
        return Result(argv, 0, "Instance registered")


class FakeEcs:
    def __init__(self) -> None:
        self.clusters = {"prod"}
        self.instances: dict[str, dict[str, Any]] = {}
        self.ssm_known: set[str] = set()
        self.deregistered: list[str] = []

    def describe_clusters(self, clusters: list[str]) -> dict[str, Any]:
        return {"clusters": [{"clusterName": c, "status": "ACTIVE"} for c in clusters
                             if c in self.clusters]}

    def describe_container_instances(self, cluster: str,
                                     containerInstances: list[str]) -> dict[str, Any]:
        return {"containerInstances": [{"containerInstanceArn": a, "status": "ACTIVE",
                                        "agentConnected": True} for a in containerInstances]}

    def deregister_container_instance(self, cluster: str, containerInstance: str,
                                      force: bool) -> dict[str, Any]:
        self.deregistered.append(containerInstance)
        return {}

    def deregister_managed_instance(self, InstanceId: str) -> dict[str, Any]:
        self.ssm_known.discard(InstanceId)
        self.deregistered.append(InstanceId)
        return {}

    def describe_instance_information(self, Filters: list[dict[str, Any]]) -> dict[str, Any]:
        wanted = Filters[0]["Values"]
        return {"InstanceInformationList": [{"InstanceId": i} for i in wanted
                                            if i in self.ssm_known]}


class FakeClients:
    def __init__(self, backend: FakeEcs) -> None:
        self.backend = backend

    def client(self, service: str) -> FakeEcs:
        return self.backend


@pytest.fixture
def node(tmp_path: Path) -> Any:
    """Build (system, make_ctx) for a fresh Debian node under tmp_path."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "var/lib").mkdir(parents=True)
    (root / "etc/os-release").write_text(DEBIAN)
    (root / "etc/machine-id").write_text("a" * 32 + "\n")
    (root / "etc/ssl/certs").mkdir(parents=True)
    (root / "etc/ssl/certs/ca-certificates.crt").write_text(CA_PEM)
    system = FakeSystem(root)
    backend = FakeEcs()
    backend.ssm_known = system.registered
    introspection: dict[str, Any] = {
        "arn": "arn:aws:ecs:us-east-1:123456789012:container-instance/prod/abc", "tasks": []}

    def http_get(url: str, timeout: float) -> tuple[int, bytes]:
        if not system.units.get("ecs", Unit()).active:
            return 0, b""
        if url.endswith("/v1/tasks"):
            return 200, json.dumps({"Tasks": introspection["tasks"]}).encode()
        return 200, json.dumps({"Cluster": "prod", "ContainerInstanceArn": introspection["arn"],
                                "Version": "Amazon ECS Agent - v1.105.1"}).encode()

    def make_ctx(with_code: bool = True, **flags: Any) -> InstallContext:
        base = {"region": "us-east-1", "cluster": "prod", "package_source": "repo",
                "docker_source": "none", "activation_id": ACTIVATION_ID}
        # A proxy URL comes from the environment, as an operator passes one with a password
        # (install refuses credentials on its argv).
        env = {name: flags.pop(key) for name, key in ENV_KEYS.items()
               if key.startswith("proxy.") and key in flags}
        base.update(flags)
        cfg = load_config(root, env, base)
        host = Host(root, runner=system)
        platform = detect(DEBIAN, "x86_64")
        pm = PackageManager(host, "apt")
        from anywhere_agent.install.context import Activation

        return InstallContext(
            cfg=cfg, host=host, platform=platform, journal=Journal(host),
            source=PackageSource(cfg, host, platform, pm),
            activation=Activation(ACTIVATION_ID, Secret(CODE)) if with_code else None,
            http_get=http_get, sleep=lambda s: None,
            clients_factory=lambda creds: FakeClients(backend))

    system.introspection = introspection  # type: ignore[attr-defined]
    return system, make_ctx, backend


@pytest.fixture(scope="session")
def shared_control_plane() -> Any:
    """The one in-process lab control plane of a test session (moto's state is global, so a
    process can run only one); suites reset it per test through their own fixtures."""
    from anywhere_agent.lab.control_plane.server import ControlPlane

    plane = ControlPlane(
        host="127.0.0.1", port=0, region="us-east-1", fault_seed=1234,
        region_ports={"eu-west-1": 0},
    ).start()
    try:
        yield plane
    finally:
        plane.stop()


# -- lab tiers ----------------------------------------------------------------------------


def lab_skip_reason() -> str | None:
    """Why tests on lab hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "lab tests need root (network namespaces, overlay mounts, systemd-nspawn)"
    for tool, pkg in (
        ("systemd-nspawn", "systemd-container"),
        ("debootstrap", "debootstrap"),
        ("ip", "iproute2"),
        ("ssh", "openssh-client"),
    ):
        if shutil.which(tool) is None:
            return f"lab tests need {tool}: apt-get install {pkg}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # One place skips every test marked `lab` (the ansible tier is marked lab too).
    lab_items = [item for item in items if item.get_closest_marker("lab")]
    reason = lab_skip_reason() if lab_items else None
    if reason:
        for item in lab_items:
            item.add_marker(pytest.mark.skip(reason=reason))


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0,
             interval: float = 0.5, detail: Callable[[], object] = str) -> Any:
    """Poll `probe` until it returns something true (returned), or fail after `timeout` s
    naming `what` and, at that moment, `detail()`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = probe()
        if got:
            return got
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} {detail()}")
