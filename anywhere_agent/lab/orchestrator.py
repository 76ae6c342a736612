"""The Lab: one named lab, a facade over state, lifecycle, services, product and faults."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from anywhere_agent.errors import LabError
from anywhere_agent.lab import aptcache, faults, image, lifecycle, network, product
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab.hosts import LabHost
from anywhere_agent.lab.services import REGION_PORTS
from anywhere_agent.lab.state import STATE_ROOT, LabInfo, LabState
from anywhere_agent.lab.system import ProcessRef

DEFAULT_LAB = "aalab"
LAB_SUFFIX_ENV = "ANYWHERE_LAB_SUFFIX"


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
        # One wheel build per lab, however many hosts install it at once.
        self.wheel_lock = threading.Lock()
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

    def _state(self) -> LabState:
        state = LabState.load(self.state_file)
        if state is None:
            raise LabError(
                f"lab {self.name} is not up", f"anywhere-agent lab up --name {self.name}"
            )
        return state

    # -- up, down (lifecycle.py) ---------------------------------------------------------

    def up(
        self,
        hosts: int,
        *,
        control_plane: bool = True,
        packages: bool = True,
    ) -> LabInfo:
        """Bring the lab up with `hosts` hosts (n1..nN); cleans a crashed lab of this name first."""
        return lifecycle.up(self, hosts, control_plane=control_plane, packages=packages)

    @contextmanager
    def running(
        self, hosts: int, *, control_plane: bool = True, packages: bool = True
    ) -> Iterator[Lab]:
        """The lab up for a `with` block, then down (which raises if anything is left)."""
        self.up(hosts, control_plane=control_plane, packages=packages)
        try:
            yield self
        finally:
            self.down()

    def down(self) -> dict[str, Any]:
        """Stop and remove everything this lab made; idempotent; raises if anything is left."""
        return lifecycle.down(self)

    def leftovers(self) -> dict[str, list[str]]:
        """Whatever of this lab still exists: processes, mounts, namespaces, interfaces, cgroups."""
        return lifecycle.leftovers(self)

    # -- status, inventory ---------------------------------------------------------------

    def hosts(self) -> list[LabHost]:
        state = self._state()
        return [
            LabHost.from_dict(self.name, self.key, h)
            for h in sorted(
                (state.data.get("hosts") or {}).values(),
                key=lambda h: network.host_index(str(h["name"])),
            )
        ]

    def host(self, name: str) -> LabHost:
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

    # -- the product (product.py) --------------------------------------------------------

    def product_wheel(self) -> Path:
        """The project's wheel, built once per lab from the checkout this package runs from."""
        return product.product_wheel(self)

    def install_product(self, host: str) -> str:
        """Install the project wheel into the host's venv over ssh; returns its version line."""
        return product.install_product(self, host)

    def install_products(self, hosts: Sequence[str] = ()) -> list[dict[str, str]]:
        """Install the product on `hosts` (default: every host); one row per host."""
        return product.install_products(self, hosts)

    # -- faults (faults.py) --------------------------------------------------------------

    # lab.fault(kind, on=..., hosts=..., ...): the kinds and options are faults.fault's.
    fault = faults.fault

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
