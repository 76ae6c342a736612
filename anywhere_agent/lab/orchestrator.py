"""The Lab: brings a control plane, a package server and N systemd hosts up, and takes them down."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anywhere_agent.errors import LabError
from anywhere_agent.lab import aptcache, image, network, system
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab.control_plane.admin import LabAdmin, LabAdminError
from anywhere_agent.lab.control_plane.faults import FaultRule
from anywhere_agent.lab.hosts import Host
from anywhere_agent.lab.network import LabNet
from anywhere_agent.lab.system import ProcessRef

LOG = logging.getLogger(__name__)

STATE_ROOT = Path("/var/lib/anywhere-agent-lab")
DEFAULT_LAB = "aalab"
LAB_SUFFIX_ENV = "ANYWHERE_LAB_SUFFIX"
CONTROL_PLANE_PORT = 4566
# Every other region the lab answers has its own port (AWS: one endpoint host per region), so
# an anonymous call (RegisterManagedInstance) belongs to the region whose endpoint it reached.
REGION_PORTS = {
    "us-east-1": 4571,
    "us-east-2": 4572,
    "us-west-2": 4573,
    "eu-west-1": 4574,
    "eu-central-1": 4575,
    "ap-southeast-2": 4576,
}
TIME_SCALE_FILE = "etc/anywhere-lab/time-scale"  # read by both doubles on every host
PACKAGE_PORT = 8080
SERVICE_START_TIMEOUT = 60.0
LAB_LOCK_TIMEOUT = 600.0
STATE_VERSION = 1
MAX_PARALLEL_BOOTS = 8
API_FAULTS = ("throttle", "5xx", "latency", "deny")
CONTROL_PLANE_FAULTS = (*API_FAULTS, "expire-activation", "deregister", "acs-outage")


# -- state file --------------------------------------------------------------------------


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

    def set_host(self, host: Host) -> None:
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


def render_inventory(
    lab: str,
    hosts: Sequence[tuple[str, str]],
    key: Path,
    gateway: str,
    region: str,
    control_plane_url: str | None,
) -> str:
    """An Ansible INI inventory of the lab; `hosts` is [(name, ip)]; pure."""
    group = re.sub(r"[^A-Za-z0-9_]", "_", lab)
    ssh_args = " ".join(
        hostlib.ssh_options(key)[2:]  # the key goes in its own variable
    )
    lines = [
        f"# anywhere-agent lab {lab!r}: `anywhere-agent lab inventory > hosts.ini`",
        f"[{group}]",
    ]
    lines += [f"{name} ansible_host={ip}" for name, ip in hosts]
    lines += [
        "",
        f"[{group}:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key}",
        f"ansible_ssh_common_args='{ssh_args}'",
        "ansible_python_interpreter=/usr/bin/python3",
        f"anywhere_lab_gateway={gateway}",
        f"anywhere_lab_region={region}",
    ]
    if control_plane_url:
        lines.append(f"anywhere_lab_endpoint={control_plane_url}")
    return "\n".join(lines) + "\n"


# -- the lab -----------------------------------------------------------------------------


class Lab:
    """One named lab; every resource it makes is scoped by its name and listed in state.json."""

    def __init__(
        self,
        name: str = DEFAULT_LAB,
        state_root: Path = STATE_ROOT,
        cache_root: Path = image.CACHE_ROOT,
        region: str = "us-east-1",
        subnet_octet: int | None = None,
        mirror: str | None = None,
        time_scale: float = 1.0,
    ) -> None:
        # Several checkouts on one machine (helpers, CI beside a session) each set their own
        # suffix, so their labs never share a name, a lock or a state directory.
        self.name = network.validate_lab_name(name + os.environ.get(LAB_SUFFIX_ENV, ""))
        self.state_root = Path(state_root)
        self.cache_root = Path(cache_root)
        self.region = region
        self.subnet_octet = subnet_octet
        self.mirror = mirror
        if time_scale <= 0:
            raise LabError(f"time scale {time_scale} is not positive", "use e.g. 1 or 20")
        # Lab seconds per real second, for the control plane and both doubles alike.
        self.time_scale = time_scale
        self._wheel_lock = threading.Lock()
        self._upstreams: list[aptcache.Upstream] | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        return self.state_root / self.name

    @property
    def state_file(self) -> Path:
        return self.dir / "state.json"

    @property
    def key(self) -> Path:
        return self.dir / "ssh" / "id_ed25519"

    @property
    def apt_stats_file(self) -> Path:
        return self.dir / "apt-cache-stats.json"

    def upstreams(self) -> list[aptcache.Upstream]:
        """The Debian repositories of this machine's apt, read once per Lab object."""
        if self._upstreams is None:
            self._upstreams = aptcache.upstreams_from_apt()
        return self._upstreams

    @contextmanager
    def _locked(self) -> Iterator[None]:
        path = Path(f"/run/lock/anywhere-agent-lab-{self.name}.lock")
        with system.file_lock(path, LAB_LOCK_TIMEOUT, f"lab {self.name}"):
            yield

    def _state(self) -> LabState:
        state = LabState.load(self.state_file)
        if state is None:
            raise LabError(
                f"lab {self.name} is not up", f"anywhere-agent lab up --name {self.name}"
            )
        return state

    # -- up ------------------------------------------------------------------------------

    def up(
        self,
        hosts: int,
        *,
        control_plane: bool = True,
        packages: bool = True,
    ) -> LabInfo:
        """Bring the lab up with `hosts` hosts (n1..nN); cleans a crashed lab of this name first."""
        if not 1 <= hosts <= network.MAX_HOSTS:
            raise LabError(f"cannot make {hosts} hosts", f"choose 1..{network.MAX_HOSTS}")
        system.require_root()
        system.require_tools("systemd-nspawn", "ip", "nsenter", "ssh", "ssh-keygen", "mount")
        _require_overlayfs()
        _ensure_inotify_instances()
        started = time.monotonic()
        seconds: dict[str, float] = {}
        with self._locked():
            if self._is_running():
                raise LabError(
                    f"lab {self.name} is already up",
                    f"use it, or `anywhere-agent lab down --name {self.name}` first",
                )
            if self.state_file.exists() or self._has_leftovers():
                LOG.warning("lab %s: cleaning leftovers of an earlier run first", self.name)
                self._teardown()
            images = image.ImageCache(self.cache_root, mirror=self.mirror).ensure()
            seconds.update({f"build_{k}": v for k, v in images.build_seconds.items()})
            with system.file_lock(network.ALLOC_LOCK, 60, "subnet allocation"):
                net = network.allocate(self.name, self.subnet_octet)
                state = LabState.new(self.state_file, self.name, net, self.region)
                state.set("time_scale", self.time_scale)
                state.record("interfaces", net.bridge)
                network.create_bridge(net)
            try:
                info = self._bring_up(state, net, images, hosts, control_plane, packages, seconds)
            except BaseException:
                # A lab that came up half-way is taken down again, so no caller (an operator,
                # a test fixture) is left holding hosts, mounts and netns it never got.
                state.set("phase", "failed")
                try:
                    self._teardown()
                except Exception as err:  # noqa: BLE001 - the bring-up error is the one to show
                    LOG.warning("could not tear down the half-made lab %s: %s", self.name, err)
                raise
            state.set("phase", "up")
        seconds["up_total"] = round(time.monotonic() - started, 2)
        return LabInfo(**{**info.__dict__, "seconds": seconds})

    def _bring_up(
        self,
        state: LabState,
        net: LabNet,
        images: image.Images,
        count: int,
        control_plane: bool,
        packages: bool,
        seconds: dict[str, float],
    ) -> LabInfo:
        self._make_key()
        t0 = time.monotonic()
        # Services start while hosts boot; they are independent until the product runs.
        with ThreadPoolExecutor(max_workers=2) as pool:
            cp = pool.submit(self._start_control_plane, state, net) if control_plane else None
            pkg = pool.submit(self._start_package_server, state, net) if packages else None
            names = [network.host_name(i) for i in range(1, count + 1)]
            booted = self._boot_hosts(state, net, images, names)
            cp_url = cp.result() if cp else None
            pkg_url = pkg.result() if pkg else None
        seconds["hosts_and_services"] = round(time.monotonic() - t0, 2)
        return LabInfo(
            name=self.name,
            region=self.region,
            subnet=net.subnet,
            gateway=net.gateway,
            control_plane_url=cp_url,
            package_url=pkg_url,
            ssh_key=self.key,
            state_file=self.state_file,
            hosts=tuple(booted),
            time_scale=self.time_scale,
        )

    def _make_key(self) -> None:
        if self.key.exists():
            return
        self.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        system.run(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                f"anywhere-lab-{self.name}",
                "-f",
                str(self.key),
            ],
            what="lab ssh key",
        )

    def _boot_hosts(
        self, state: LabState, net: LabNet, images: image.Images, names: Sequence[str]
    ) -> list[HostInfo]:
        pubkey = self.key.with_suffix(".pub").read_text()
        base_url = f"http://{net.gateway}:{PACKAGE_PORT}"
        debian_sources = "\n".join(u.source_line(base_url) for u in self.upstreams())

        def one(name: str) -> HostInfo:
            host = Host(
                lab=self.name,
                name=name,
                ip=net.host_ip(name),
                netns=net.netns(name),
                dir=self.dir / "hosts" / name,
                key=self.key,
            )
            state.set_host(host)
            state.record("netns", host.netns)
            state.record("interfaces", net.veth(name))
            network.create_host_link(net, name)
            state.record("mounts", str(host.merged))
            # dockerd turns on forwarding unless it is on already, and nspawn keeps
            # /proc/sys/net read-only in a namespace it did not make: switch it on from here.
            system.run(
                ["ip", "netns", "exec", host.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"],
                what=f"ip_forward in {host.netns}",
            )
            hostlib.mount_root(host, images.lowerdirs())
            hostlib.write_files(host, net.gateway, pubkey, debian_sources)
            scale_file = host.merged / TIME_SCALE_FILE
            scale_file.parent.mkdir(parents=True, exist_ok=True)
            scale_file.write_text(f"{self.time_scale:g}\n")
            cgroups = hostlib.cgroup_dirs(host.machine)
            for cg in cgroups:
                state.record("cgroups", str(cg))
            host = _replace(host, nspawn=hostlib.boot(host, cgroups))
            state.set_host(host)
            host = _replace(host, leader=hostlib.wait_leader(host))
            state.set_host(host)
            sd = hostlib.wait_ready(host)
            return HostInfo(
                host.name,
                host.ip,
                host.machine,
                host.netns,
                host.leader.pid if host.leader else None,
                sd,
            )

        workers = max(1, min(len(names), MAX_PARALLEL_BOOTS))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="lab-host") as pool:
            futures = [pool.submit(one, n) for n in names]
            errors = [f.exception() for f in futures]
        failed = [e for e in errors if e is not None]
        if failed:
            first = failed[0]
            if isinstance(first, LabError):
                raise first
            raise LabError(
                f"a lab host failed to start: {first!r}",
                "anywhere-agent lab down, then retry; see the host console.log",
            ) from first
        return [f.result() for f in futures]

    def _start_service(
        self,
        state: LabState,
        name: str,
        argv: list[str],
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
    ) -> ProcessRef:
        log_path = self.dir / f"{name}.log"
        # Recorded before the process exists, so a crash right after still finds it by pid file.
        state.set_process(name, None, pid_file=str(self.dir / f"{name}.pid"), log=str(log_path))
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **(env or {})},
            )
        ref = ProcessRef.of(proc.pid)
        state.set_process(
            name,
            ref,
            pid_file=str(self.dir / f"{name}.pid"),
            log=str(log_path),
            url=f"http://{host}:{port}",
        )
        deadline = time.monotonic() + SERVICE_START_TIMEOUT
        while time.monotonic() < deadline:
            if not ref.alive():
                system.reap(ref.pid)
                raise LabError(
                    f"lab {name} exited at start: {system.log_tail(log_path)}", f"read {log_path}"
                )
            if _port_open(host, port):
                return ref
            time.sleep(0.1)
        raise LabError(
            f"lab {name} did not listen on {host}:{port} within {SERVICE_START_TIMEOUT:.0f}s",
            f"read {log_path}",
        )

    def _start_control_plane(self, state: LabState, net: LabNet) -> str:
        argv = [
            sys.executable,
            "-m",
            "anywhere_agent.lab.control_plane",
            "--host",
            net.gateway,
            "--port",
            str(CONTROL_PLANE_PORT),
            "--region",
            self.region,
            "--time-scale",
            f"{self.time_scale:g}",
            "--pid-file",
            str(self.dir / "control-plane.pid"),
        ]
        for region, port in REGION_PORTS.items():
            if region != self.region:
                argv += ["--region-port", f"{region}={port}"]
        self._start_service(
            state,
            "control-plane",
            argv,
            net.gateway,
            CONTROL_PLANE_PORT,
            env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
        )
        return f"http://{net.gateway}:{CONTROL_PLANE_PORT}"

    def _start_package_server(self, state: LabState, net: LabNet) -> str:
        root = self._ensure_repos()
        argv = [
            sys.executable,
            "-m",
            "anywhere_agent.lab.pkgserver",
            "--host",
            net.gateway,
            "--port",
            str(PACKAGE_PORT),
            "--root",
            str(root),
            "--pid-file",
            str(self.dir / "package-server.pid"),
            "--apt-cache",
            str(self.cache_root / "apt"),
            "--apt-stats",
            str(self.apt_stats_file),
            *aptcache.upstreams_to_args(self.upstreams()),
            # The server reads apt's proxy itself: on argv a password would show in ps.
            "--apt-proxy-from-apt",
        ]
        self._start_service(state, "package-server", argv, net.gateway, PACKAGE_PORT)
        return f"http://{net.gateway}:{PACKAGE_PORT}"

    def _ensure_repos(self) -> Path:
        """The doubles' apt repo and S3 layout; build_repos itself reuses an unchanged build."""
        try:
            from anywhere_agent.lab.doubles.packaging import build_repos
        except ImportError as exc:
            raise LabError(
                "the lab agent doubles are not available (anywhere_agent.lab.doubles)",
                "install anywhere-agent[lab] from a complete checkout",
            ) from exc
        # One directory per version of the doubles: labs from different checkouts share the
        # cache, and one rebuilding in place would swap the packages under another's hosts.
        from anywhere_agent.lab import doubles

        digest = hashlib.sha256()
        for src in sorted(Path(doubles.__file__).parent.glob("*.py")):
            digest.update(src.name.encode() + b"\0" + src.read_bytes())
        out = self.cache_root / f"repos-{digest.hexdigest()[:16]}"
        # Labs coming up together must not build into the same directory at once.
        with system.file_lock(
            self.cache_root / "repos.lock", image.BUILD_LOCK_TIMEOUT, "package build"
        ):
            try:
                info = build_repos(out, signing_home=self.cache_root / "repos-gnupg")
            except LabError:
                raise
            except Exception as exc:
                raise LabError(
                    f"building the lab's agent-double packages failed: {exc}",
                    "see anywhere_agent/lab/doubles/README.md for their build needs",
                ) from exc
        return Path(info.out_dir)

    # -- down ----------------------------------------------------------------------------

    def down(self) -> dict[str, Any]:
        """Stop and remove everything this lab made; idempotent; raises if anything is left."""
        system.require_root()
        started = time.monotonic()
        with self._locked():
            removed = self._teardown()
        removed["seconds"] = round(time.monotonic() - started, 2)
        return removed

    def _is_running(self) -> bool:
        """A complete lab whose every recorded process still lives (not a crashed one)."""
        state = LabState.load(self.state_file)
        if state is None or state.data.get("phase") != "up":
            return False
        hosts = [Host.from_dict(self.name, self.key, h) for h in state.data["hosts"].values()]
        refs = [*state.process_refs().values()]
        for h in hosts:
            refs += [h.nspawn, h.leader] if h.nspawn and h.leader else []
        if len(refs) < 2 * len(hosts):
            return False
        return bool(refs) and all(r.alive() for r in refs)

    def _has_leftovers(self) -> bool:
        left = network.leftovers(self.name)
        return bool(
            self._cgroup_leftovers()
            or left["interfaces"]
            or left["netns"]
            or self._stray_processes()
            or system.mounts_under(self.dir)
        )

    def _stray_processes(self) -> list[ProcessRef]:
        """Lab processes found by naming convention: nspawn by machine name, services by paths."""
        machine = re.compile(rf"--machine={re.escape(self.name)}-n[0-9]+")
        marker = str(self.dir) + "/"
        found: list[ProcessRef] = []
        for pid in system.iter_pids():
            if pid == os.getpid():
                continue
            argv = system.cmdline(pid)
            if not argv:
                continue
            if os.path.basename(argv[0]) == "systemd-nspawn":
                ours = any(machine.fullmatch(a) for a in argv)
            else:
                ours = any(a.startswith(marker) for a in argv) and any(
                    a.startswith("anywhere_agent.lab.") for a in argv
                )
            if ours:
                st = system.start_time(pid)
                if st is not None:
                    found.append(ProcessRef(pid, st))
        return found

    def _teardown(self) -> dict[str, Any]:
        state = LabState.load(self.state_file)
        data = state.data if state else {}
        key = self.key
        hosts = [Host.from_dict(self.name, key, h) for h in (data.get("hosts") or {}).values()]
        report: dict[str, Any] = {"lab": self.name, "hosts": [h.name for h in hosts]}
        if state is not None:
            state.set("phase", "stopping")

        # 1. hosts: nspawn first (orderly halt), then any init whose nspawn already died.
        stuck = hostlib.stop(hosts)
        # 2. services and anything else the naming convention finds.
        refs = list(state.process_refs().values()) if state else []
        refs += [r for r in self._stray_processes() if r not in refs]
        stuck += [f"pid {r.pid}" for r in system.stop_processes(refs, grace=10.0)]
        # 3. mounts (recorded ones and anything under the lab dir).
        for m in data.get("mounts", []):
            system.unmount_under(Path(m))
        system.unmount_under(self.dir)
        # 4. the hosts' cgroups, empty now that their processes are gone.
        known = {Path(c) for c in data.get("cgroups", [])} | set(self._cgroup_leftovers())
        busy_cgroups = hostlib.remove_cgroups(sorted(known))
        # 5. network: namespaces (takes the veths along), then interfaces, then the bridge.
        left = network.leftovers(self.name)
        for ns in sorted(set(data.get("netns", [])) | set(left["netns"])):
            network.delete_netns(ns)
        ifaces = sorted(
            set(data.get("interfaces", [])) | set(left["interfaces"]),
            key=lambda n: n.endswith("-br"),
        )  # bridge last
        for name in ifaces:
            network.delete_link(name)
        # 6. the state dir (logs and key go with it).
        if self.dir.exists():
            system.remove_tree(self.dir)
        remaining = self.leftovers()
        if stuck:
            remaining.setdefault("processes", []).extend(stuck)
        if busy_cgroups:
            remaining.setdefault("cgroups", []).extend(busy_cgroups)
        if any(remaining.values()):
            raise LabError(
                f"lab {self.name} left {remaining}",
                "run `anywhere-agent lab down` again, then remove them by hand",
            )
        report["removed"] = True
        return report

    def _cgroup_leftovers(self) -> list[Path]:
        pattern = re.compile(rf"{re.escape(self.name)}-n[0-9]+")
        found: list[Path] = []
        for probe in hostlib.cgroup_dirs("probe"):
            if probe.parent.is_dir():
                found += [p for p in probe.parent.iterdir() if pattern.fullmatch(p.name)]
        return found

    def leftovers(self) -> dict[str, list[str]]:
        """Whatever of this lab still exists: processes, mounts, namespaces, interfaces, cgroups."""
        left = network.leftovers(self.name)
        return {
            "processes": [f"pid {r.pid}" for r in self._stray_processes()],
            "cgroups": [str(p) for p in self._cgroup_leftovers()],
            "mounts": [str(m) for m in system.mounts_under(self.dir)],
            "netns": left["netns"],
            "interfaces": left["interfaces"],
        }

    # -- status, inventory ---------------------------------------------------------------

    def hosts(self) -> list[Host]:
        state = self._state()
        return [
            Host.from_dict(self.name, self.key, h)
            for h in sorted(
                (state.data.get("hosts") or {}).values(),
                key=lambda h: network.host_index(str(h["name"])),
            )
        ]

    def host(self, name: str) -> Host:
        for host in self.hosts():
            if host.name == name:
                return host
        raise LabError(f"lab {self.name} has no host {name!r}", "see `anywhere-agent lab status`")

    def status(self) -> dict[str, Any]:
        state = LabState.load(self.state_file)
        if state is None:
            return {"name": self.name, "state": "down", "hosts": [], **self.leftovers()}
        data = state.data
        services = {}
        for name, entry in (data.get("processes") or {}).items():
            ref = ProcessRef.from_dict(entry) if "pid" in entry else None
            services[name.replace("-", "_")] = {
                "url": entry.get("url"),
                "pid": ref.pid if ref else None,
                "alive": bool(ref and ref.alive()),
                "log": entry.get("log"),
            }
        rows = []
        for host in self.hosts():
            running = bool(host.leader and host.leader.alive())
            row: dict[str, Any] = {
                "name": host.name,
                "ip": host.ip,
                "machine": host.machine,
                "running": running,
                "systemd": "stopped",
                "ssh": False,
                "faults": [],
            }
            if running:
                row["systemd"] = hostlib.system_state(host)
                row["ssh"] = hostlib.sshd_answers(host.ip, timeout=1.0)
                row["faults"] = hostlib.faults(host)
            row.update(hostlib.memory(host))
            rows.append(row)
        healthy = all(r["running"] for r in rows) and all(s["alive"] for s in services.values())
        return {
            "name": self.name,
            "state": data.get("phase", "unknown") if healthy else "degraded",
            "region": data.get("region"),
            "subnet": data.get("subnet"),
            "gateway": data.get("gateway"),
            "ssh_key": str(self.key),
            "services": services,
            "hosts": rows,
            "images": image.image_info(self.cache_root),
            "apt_cache": self.apt_cache_stats(),
        }

    def apt_cache_stats(self) -> dict[str, Any]:
        """Hits and misses of this lab's Debian proxy, and the share served from the cache."""
        stats: dict[str, Any] = dict(aptcache.read_stats(self.apt_stats_file))
        stats["hit_rate"] = aptcache.hit_rate(stats)
        return stats

    def inventory(self) -> str:
        state = self._state()
        cp = (state.data.get("processes") or {}).get("control-plane", {}).get("url")
        return render_inventory(
            self.name,
            [(h.name, h.ip) for h in self.hosts()],
            self.key,
            str(state.data["gateway"]),
            str(state.data["region"]),
            cp,
        )

    # -- talking to hosts ----------------------------------------------------------------

    def exec(
        self, host: str, argv: Sequence[str], input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return hostlib.exec(self.host(host), argv, input, check=check)

    def ssh(
        self, host: str, argv: Sequence[str], input: bytes | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[bytes]:
        return hostlib.ssh(self.host(host), argv, input, check=check)

    def copy_in(self, host: str, local: Path, remote: str, mode: int | None = None) -> None:
        hostlib.copy_in(self.host(host), local, remote, mode)

    def product_wheel(self) -> Path:
        """The project's wheel, built once per lab from the checkout this package runs from."""
        with self._wheel_lock:
            out = self.dir / "wheels"
            found = sorted(out.glob("anywhere_agent-*.whl"))
            if found:
                return found[-1]
            # This file is anywhere_agent/lab/orchestrator.py inside the checkout.
            src = Path(__file__).resolve().parents[2]
            if not (src / "pyproject.toml").is_file():
                raise LabError(
                    f"anywhere_agent runs from {src}, not a source checkout",
                    "install it editable from a checkout: pip install -e .[lab]",
                )
            out.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="anywhere-lab-src-") as tmp:
                # Building in a copy keeps build/ and *.egg-info out of the working tree.
                copy = Path(tmp) / "src"
                shutil.copytree(
                    src,
                    copy,
                    ignore=shutil.ignore_patterns(
                        ".git",
                        ".venv",
                        "venv",
                        "tests",
                        "build",
                        "dist",
                        "*.egg-info",
                        "__pycache__",
                        ".mypy_cache",
                        ".ruff_cache",
                        ".pytest_cache",
                        "node_modules",
                    ),
                )
                system.run(
                    [
                        sys.executable,
                        "-m",
                        "pip",
                        "wheel",
                        "--quiet",
                        "--no-deps",
                        "--disable-pip-version-check",
                        "--wheel-dir",
                        str(out),
                        str(copy),
                    ],
                    timeout=600,
                    what="pip wheel of anywhere-agent",
                )
            found = sorted(out.glob("anywhere_agent-*.whl"))
            if not found:
                raise LabError("pip wheel produced no anywhere_agent wheel", "run it by hand")
            return found[-1]

    def install_product(self, host: str) -> str:
        """Install the project wheel into the host's venv over ssh; returns its version line."""
        wheel = self.product_wheel()
        h = self.host(host)
        remote = f"/var/tmp/{wheel.name}"
        venv = image.VENV
        hostlib.ssh(h, ["dd", f"of={remote}", "status=none"], input=wheel.read_bytes())
        hostlib.ssh(
            h,
            [
                f"{venv}/bin/pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                "--force-reinstall",
                "--disable-pip-version-check",
                remote,
            ],
        )
        hostlib.ssh(
            h, ["ln", "-sfn", f"{venv}/bin/anywhere-agent", "/usr/local/bin/anywhere-agent"]
        )
        hostlib.ssh(h, ["rm", "-f", remote])
        proc = hostlib.ssh(h, [f"{venv}/bin/pip", "show", "anywhere-agent"], check=False)
        version = next(
            (
                ln.split(":", 1)[1].strip()
                for ln in proc.stdout.decode().splitlines()
                if ln.startswith("Version:")
            ),
            "unknown",
        )
        return version

    # -- faults --------------------------------------------------------------------------

    def fault(
        self,
        kind: str,
        *,
        on: bool = True,
        hosts: Sequence[str] = (),
        service: str = "*",
        operation: str = "*",
        rate: float = 1.0,
        status: int = 500,
        latency_ms: int = 0,
        activation_id: str = "",
    ) -> dict[str, Any]:
        """Switch a fault on (or off with on=False).

        Host faults (ecs-hang, ecs-crash, ssm-stale) are marker files the agent doubles watch,
        on `hosts` (default all). API faults (throttle, 5xx, latency) are control-plane rules
        for service/operation at `rate`; expire-activation expires `activation_id`;
        deregister deregisters each of `hosts` centrally (SSM DeregisterManagedInstance);
        acs-outage refuses (off: allows again) ACS sessions of `hosts`, whose agents then read
        agentConnected=false and keep re-dialling.
        """
        if kind in hostlib.HOST_FAULTS:
            targets = [self.host(n) for n in hosts] if hosts else self.hosts()
            for h in targets:
                hostlib.set_fault(h, kind, on)
            return {"fault": kind, "on": on, "hosts": [h.name for h in targets]}
        if kind not in CONTROL_PLANE_FAULTS:
            raise LabError(
                f"unknown fault {kind!r}",
                f"use one of: {', '.join(hostlib.HOST_FAULTS + CONTROL_PLANE_FAULTS)}",
            )
        admin = self._admin()
        try:
            if kind in API_FAULTS:
                return self._api_fault(
                    admin, kind, on, service, operation, rate, status, latency_ms
                )
            if kind == "expire-activation":
                if not activation_id:
                    raise LabError(
                        "expire-activation needs an activation id",
                        "pass --activation-id (from `aws ssm describe-activations`)",
                    )
                admin.expire_activation(activation_id)
                return {"fault": kind, "activation_id": activation_id}
            if kind == "acs-outage":
                if not hosts:
                    raise LabError("acs-outage needs the hosts to cut off", "pass --host n1 ...")
                ids = {name: self._instance_id(name) for name in hosts}
                for instance_id in ids.values():
                    admin.refuse_acs(instance_id, refuse=on)
                return {"fault": kind, "on": on, "hosts": ids}
            return self._deregister(kind, hosts)
        except LabAdminError as exc:
            raise LabError(
                f"control plane refused the fault: {exc}",
                "check `anywhere-agent lab status`; the control plane log is "
                f"{self.dir / 'control-plane.log'}",
            ) from exc

    def _admin(self) -> LabAdmin:
        url = self.control_plane_url()
        return LabAdmin(url, timeout=10.0)

    def region_url(self, region: str) -> str:
        """The control plane's endpoint of `region` (the lab's own region: the main URL)."""
        if region == self.region:
            return self.control_plane_url()
        if region not in REGION_PORTS:
            raise LabError(
                f"the lab serves no endpoint for {region}",
                f"use one of: {', '.join(sorted(REGION_PORTS))}",
            )
        return f"http://{self._state().data['gateway']}:{REGION_PORTS[region]}"

    def control_plane_url(self) -> str:
        state = self._state()
        url = (state.data.get("processes") or {}).get("control-plane", {}).get("url")
        if not url:
            raise LabError(
                f"lab {self.name} runs no control plane",
                "anywhere-agent lab down, then lab up (with its control plane)",
            )
        return str(url)

    @staticmethod
    def _api_fault(
        admin: LabAdmin,
        kind: str,
        on: bool,
        service: str,
        operation: str,
        rate: float,
        status: int,
        latency_ms: int,
    ) -> dict[str, Any]:
        try:
            rule = FaultRule(
                kind=kind,
                service=service,
                operation=operation,
                rate=rate,
                status=status,
                latency_ms=latency_ms,
            )
        except ValueError as exc:
            raise LabError(str(exc), "see `anywhere-agent lab fault --help`") from exc
        # Rules for other kinds or targets stay; this switch replaces only its own.
        rules = [
            r
            for r in admin.faults()
            if (r.kind, r.service, r.operation) != (kind, service, operation)
        ]
        if on:
            rules.append(rule)
        admin.set_faults(rules)
        return {"fault": kind, "on": on, "rules": [r.to_json() for r in rules]}

    def _deregister(self, kind: str, hosts: Sequence[str]) -> dict[str, Any]:
        if not hosts:
            raise LabError("deregister needs the hosts to deregister", "pass --host n1 ...")
        import boto3  # the lab extra's boto3; the product path never imports lab

        ssm = boto3.client(
            "ssm",
            region_name=self.region,
            endpoint_url=self.control_plane_url(),
            # The lab account's documented root key (control_plane/principals.py).
            aws_access_key_id="lab",
            aws_secret_access_key="lab",  # noqa: S106
        )
        done: dict[str, str] = {}
        for name in hosts:
            instance_id = self._instance_id(name)
            ssm.deregister_managed_instance(InstanceId=instance_id)
            done[name] = instance_id
        return {"fault": kind, "deregistered": done}

    def _instance_id(self, name: str) -> str:
        """The host's managed instance ID, as its SSM agent recorded it."""
        proc = self.exec(name, ["cat", "/var/lib/amazon/ssm/registration"], check=False)
        try:
            return str(json.loads(proc.stdout)["ManagedInstanceID"])
        except (ValueError, KeyError, TypeError):
            raise LabError(
                f"{name} is not registered with SSM", f"install the node agent on {name} first"
            ) from None


# -- small helpers -----------------------------------------------------------------------


def _replace(host: Host, **changes: Any) -> Host:
    return dataclasses.replace(host, **changes)


# Every host's systemd (and its journald, logind, dbus) holds inotify instances, all counted
# against root on the build machine: Debian's default of 128 runs out at about ten hosts (across
# every lab on the machine), and systemd in the hosts then fails with "Too many open files".
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_INSTANCES_WANTED = 8192


def _ensure_inotify_instances(path: Path = INOTIFY_INSTANCES) -> None:
    try:
        current = int(path.read_text().strip())
        if current < INOTIFY_INSTANCES_WANTED:
            path.write_text(f"{INOTIFY_INSTANCES_WANTED}\n")
            LOG.info("raised fs.inotify.max_user_instances from %d to %d for the lab's hosts",
                     current, INOTIFY_INSTANCES_WANTED)
    except (OSError, ValueError) as err:
        LOG.warning("could not raise fs.inotify.max_user_instances (%s); more than about ten "
                    "hosts may fail to boot", err)


def _require_overlayfs() -> None:
    if "overlay" not in Path("/proc/filesystems").read_text():
        system.run(["modprobe", "overlay"], check=False)
        if "overlay" not in Path("/proc/filesystems").read_text():
            raise LabError(
                "the kernel has no overlayfs", "modprobe overlay (or use a kernel with it)"
            )


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
