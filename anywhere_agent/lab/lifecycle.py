"""The lab's life: `up` makes the network, services and hosts; `down` removes every trace."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anywhere_agent.errors import LabError
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab import image, network, nspawn, services, system
from anywhere_agent.lab.hosts import LabHost
from anywhere_agent.lab.network import LabNet
from anywhere_agent.lab.state import HostInfo, LabInfo, LabState
from anywhere_agent.lab.system import ProcessRef

if TYPE_CHECKING:
    from anywhere_agent.lab.orchestrator import Lab

LOG = logging.getLogger(__name__)

LAB_LOCK_TIMEOUT = 600.0
TIME_SCALE_FILE = "etc/anywhere-lab/time-scale"  # read by both doubles on every host
MAX_PARALLEL_BOOTS = 8


@contextmanager
def locked(lab: Lab) -> Iterator[None]:
    path = Path(f"/run/lock/anywhere-agent-lab-{lab.name}.lock")
    with system.file_lock(path, LAB_LOCK_TIMEOUT, f"lab {lab.name}"):
        yield


def up(
    lab: Lab,
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
    with locked(lab):
        if _is_running(lab):
            raise LabError(
                f"lab {lab.name} is already up",
                f"use it, or `anywhere-agent lab down --name {lab.name}` first",
            )
        if lab.state_file.exists() or _has_leftovers(lab):
            LOG.warning("lab %s: cleaning leftovers of an earlier run first", lab.name)
            _teardown(lab)
        images = image.ImageCache(lab.cache_root, mirror=lab.mirror).ensure()
        seconds.update({f"build_{k}": v for k, v in images.build_seconds.items()})
        with system.file_lock(network.ALLOC_LOCK, 60, "subnet allocation"):
            net = network.allocate(lab.name, lab.subnet_octet)
            state = LabState.new(lab.state_file, lab.name, net, lab.region)
            state.set("time_scale", lab.time_scale)
            state.record("interfaces", net.bridge)
            network.create_bridge(net)
        try:
            info = _bring_up(lab, state, net, images, hosts, control_plane, packages, seconds)
        except BaseException:
            # A lab that came up half-way is taken down again, so no caller (an operator,
            # a test fixture) is left holding hosts, mounts and netns it never got.
            state.set("phase", "failed")
            try:
                _teardown(lab)
            except Exception as err:  # noqa: BLE001 - the bring-up error is the one to show
                LOG.warning("could not tear down the half-made lab %s: %s", lab.name, err)
            raise
        state.set("phase", "up")
    seconds["up_total"] = round(time.monotonic() - started, 2)
    return LabInfo(**{**info.__dict__, "seconds": seconds})


def _bring_up(
    lab: Lab,
    state: LabState,
    net: LabNet,
    images: image.Images,
    count: int,
    control_plane: bool,
    packages: bool,
    seconds: dict[str, float],
) -> LabInfo:
    _make_key(lab)
    t0 = time.monotonic()
    # Services start while hosts boot; they are independent until the product runs.
    with ThreadPoolExecutor(max_workers=2) as pool:
        cp = pool.submit(services.start_control_plane, lab, state, net) if control_plane else None
        pkg = pool.submit(services.start_package_server, lab, state, net) if packages else None
        names = [network.host_name(i) for i in range(1, count + 1)]
        booted = _boot_hosts(lab, state, net, images, names)
        cp_url = cp.result() if cp else None
        pkg_url = pkg.result() if pkg else None
    seconds["hosts_and_services"] = round(time.monotonic() - t0, 2)
    return LabInfo(
        name=lab.name,
        region=lab.region,
        subnet=net.subnet,
        gateway=net.gateway,
        control_plane_url=cp_url,
        package_url=pkg_url,
        ssh_key=lab.key,
        state_file=lab.state_file,
        hosts=tuple(booted),
        time_scale=lab.time_scale,
    )


def _make_key(lab: Lab) -> None:
    if lab.key.exists():
        return
    lab.key.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    hostlib.new_ssh_key(lab.key, f"anywhere-lab-{lab.name}", "lab ssh key")


def _boot_hosts(
    lab: Lab, state: LabState, net: LabNet, images: image.Images, names: Sequence[str]
) -> list[HostInfo]:
    pubkey = lab.key.with_suffix(".pub").read_text()
    base_url = f"http://{net.gateway}:{services.PACKAGE_PORT}"
    debian_sources = "\n".join(u.source_line(base_url) for u in lab.upstreams())

    def one(name: str) -> HostInfo:
        host = LabHost(
            lab=lab.name,
            name=name,
            ip=net.host_ip(name),
            netns=net.netns(name),
            dir=lab.dir / "hosts" / name,
            key=lab.key,
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
        scale_file.write_text(f"{lab.time_scale:g}\n")
        cgroups = nspawn.cgroup_dirs(host.machine)
        for cg in cgroups:
            state.record("cgroups", str(cg))
        host = _replace(host, nspawn=nspawn.boot(host, cgroups))
        state.set_host(host)
        host = _replace(host, leader=nspawn.wait_leader(host))
        state.set_host(host)
        sd = nspawn.wait_ready(host)
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


def down(lab: Lab) -> dict[str, Any]:
    """Stop and remove everything this lab made; idempotent; raises if anything is left."""
    system.require_root()
    started = time.monotonic()
    with locked(lab):
        removed = _teardown(lab)
    removed["seconds"] = round(time.monotonic() - started, 2)
    return removed


def _is_running(lab: Lab) -> bool:
    """A complete lab whose every recorded process still lives (not a crashed one)."""
    state = LabState.load(lab.state_file)
    if state is None or state.data.get("phase") != "up":
        return False
    hosts = [LabHost.from_dict(lab.name, lab.key, h) for h in state.data["hosts"].values()]
    refs = [*state.process_refs().values()]
    for h in hosts:
        refs += [h.nspawn, h.leader] if h.nspawn and h.leader else []
    if len(refs) < 2 * len(hosts):
        return False
    return bool(refs) and all(r.alive() for r in refs)


def _has_leftovers(lab: Lab) -> bool:
    left = network.leftovers(lab.name)
    return bool(
        _cgroup_leftovers(lab)
        or left["interfaces"]
        or left["netns"]
        or _stray_processes(lab)
        or system.mounts_under(lab.dir)
    )


def _stray_processes(lab: Lab) -> list[ProcessRef]:
    """Lab processes found by naming convention: nspawn by machine name, services by paths."""
    machine = re.compile(rf"--machine={re.escape(lab.name)}-n[0-9]+")
    marker = str(lab.dir) + "/"
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


def _teardown(lab: Lab) -> dict[str, Any]:
    state = LabState.load(lab.state_file)
    data = state.data if state else {}
    key = lab.key
    hosts = [LabHost.from_dict(lab.name, key, h) for h in (data.get("hosts") or {}).values()]
    report: dict[str, Any] = {"lab": lab.name, "hosts": [h.name for h in hosts]}
    if state is not None:
        state.set("phase", "stopping")

    # 1. hosts: nspawn first (orderly halt), then any init whose nspawn already died.
    stuck = nspawn.stop(hosts)
    # 2. services and anything else the naming convention finds.
    refs = list(state.process_refs().values()) if state else []
    refs += [r for r in _stray_processes(lab) if r not in refs]
    stuck += [f"pid {r.pid}" for r in system.stop_processes(refs, grace=10.0)]
    # 3. mounts (recorded ones and anything under the lab dir).
    for m in data.get("mounts", []):
        system.unmount_under(Path(m))
    system.unmount_under(lab.dir)
    # 4. the hosts' cgroups, empty now that their processes are gone.
    known = {Path(c) for c in data.get("cgroups", [])} | set(_cgroup_leftovers(lab))
    busy_cgroups = nspawn.remove_cgroups(sorted(known))
    # 5. network: namespaces (takes the veths along), then interfaces, then the bridge.
    left = network.leftovers(lab.name)
    for ns in sorted(set(data.get("netns", [])) | set(left["netns"])):
        network.delete_netns(ns)
    ifaces = sorted(
        set(data.get("interfaces", [])) | set(left["interfaces"]),
        key=lambda n: n.endswith("-br"),
    )  # bridge last
    for name in ifaces:
        network.delete_link(name)
    # 6. the state dir (logs and key go with it).
    if lab.dir.exists():
        system.remove_tree(lab.dir)
    remaining = lab.leftovers()
    if stuck:
        remaining.setdefault("processes", []).extend(stuck)
    if busy_cgroups:
        remaining.setdefault("cgroups", []).extend(busy_cgroups)
    if any(remaining.values()):
        raise LabError(
            f"lab {lab.name} left {remaining}",
            "run `anywhere-agent lab down` again, then remove them by hand",
        )
    report["removed"] = True
    return report


def _cgroup_leftovers(lab: Lab) -> list[Path]:
    pattern = re.compile(rf"{re.escape(lab.name)}-n[0-9]+")
    found: list[Path] = []
    for probe in nspawn.cgroup_dirs("probe"):
        if probe.parent.is_dir():
            found += [p for p in probe.parent.iterdir() if pattern.fullmatch(p.name)]
    return found


def leftovers(lab: Lab) -> dict[str, list[str]]:
    """Whatever of this lab still exists: processes, mounts, namespaces, interfaces, cgroups."""
    left = network.leftovers(lab.name)
    return {
        "processes": [f"pid {r.pid}" for r in _stray_processes(lab)],
        "cgroups": [str(p) for p in _cgroup_leftovers(lab)],
        "mounts": [str(m) for m in system.mounts_under(lab.dir)],
        "netns": left["netns"],
        "interfaces": left["interfaces"],
    }


def _replace(host: LabHost, **changes: Any) -> LabHost:
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
