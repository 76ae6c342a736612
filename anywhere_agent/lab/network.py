"""Lab networking: one bridge per lab in the root netns, one netns + veth per host, no way out."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from anywhere_agent.errors import LabError
from anywhere_agent.lab import system

LOG = logging.getLogger(__name__)

SUBNET_PREFIX = "10.213"
OCTET_MIN, OCTET_MAX = 16, 250  # X in 10.213.X.0/24
HOST_OFFSET = 10  # host nK gets .(10+K): n1 = .11, as in the architecture map
MAX_HOSTS = 240
IFNAMSIZ = 15  # Linux interface names are at most 15 bytes
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$")
HOST_RE = re.compile(r"^n([1-9][0-9]{0,2})$")
ALLOC_LOCK = Path("/run/lock/anywhere-agent-lab-net.lock")


def validate_lab_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise LabError(
            f"bad lab name {name!r}",
            "use 2-32 lowercase letters, digits and '-', starting with a letter",
        )
    return name


def host_name(index: int) -> str:
    return f"n{index}"


def host_index(name: str) -> int:
    m = HOST_RE.match(name)
    if not m:
        raise LabError(f"bad lab host name {name!r}", "lab hosts are named n1, n2, ...")
    return int(m.group(1))


def iface_tag(lab: str) -> str:
    """A prefix for interface names that leaves room for '-n240' within 15 bytes."""
    if len(lab) <= 8:
        return lab
    return lab[:3] + hashlib.sha256(lab.encode()).hexdigest()[:5]


def derive_octet(lab: str) -> int:
    """Third octet of the lab subnet, stable per lab name."""
    span = OCTET_MAX - OCTET_MIN + 1
    return OCTET_MIN + int(hashlib.sha256(lab.encode()).hexdigest(), 16) % span


@dataclass(frozen=True)
class LabNet:
    """Names and addresses of one lab's network; pure, so tests check it without root."""

    lab: str
    octet: int

    @property
    def gateway(self) -> str:
        return f"{SUBNET_PREFIX}.{self.octet}.1"

    @property
    def subnet(self) -> str:
        return f"{SUBNET_PREFIX}.{self.octet}.0/24"

    @property
    def bridge(self) -> str:
        return f"{iface_tag(self.lab)}-br"

    def host_ip(self, host: str) -> str:
        index = host_index(host)
        if index > MAX_HOSTS:
            raise LabError(f"host {host} is beyond the lab's {MAX_HOSTS}", "use fewer hosts")
        return f"{SUBNET_PREFIX}.{self.octet}.{HOST_OFFSET + index}"

    def netns(self, host: str) -> str:
        return f"{self.lab}-{host}"

    def veth(self, host: str) -> str:
        name = f"{iface_tag(self.lab)}-{host}"
        assert len(name) <= IFNAMSIZ, name
        return name

    def owns_iface(self, name: str) -> bool:
        tag = re.escape(iface_tag(self.lab))
        return re.fullmatch(rf"{tag}-(br|n[0-9]+)", name) is not None

    def owns_netns(self, name: str) -> bool:
        return re.fullmatch(rf"{re.escape(self.lab)}-n[0-9]+", name) is not None


# -- inspection --------------------------------------------------------------------------


def links() -> list[dict[str, object]]:
    out = system.run(["ip", "-j", "addr", "show"], what="ip addr").stdout
    data: list[dict[str, object]] = json.loads(out or b"[]")
    return data


def link_names() -> set[str]:
    return {str(link["ifname"]) for link in links()}


def netns_names() -> set[str]:
    # `ip netns list` prints "name (id: N)"; the directory is the source of truth.
    run_netns = Path("/run/netns")
    return {p.name for p in run_netns.iterdir()} if run_netns.is_dir() else set()


def octets_in_use() -> dict[int, str]:
    """Third octets of 10.213.X.0/24 addresses on root-netns interfaces -> interface name."""
    used: dict[int, str] = {}
    for link in links():
        for addr in link.get("addr_info", []) or []:  # type: ignore[attr-defined]
            local = str(addr.get("local", ""))
            if local.startswith(SUBNET_PREFIX + "."):
                used[int(local.split(".")[2])] = str(link["ifname"])
    return used


def allocate(lab: str, octet: int | None = None) -> LabNet:
    """Pick the lab's subnet: the given octet, else the derived one, probing past another lab's."""
    validate_lab_name(lab)
    used = octets_in_use()
    bridge = LabNet(lab, 0).bridge
    if octet is not None:
        if not OCTET_MIN <= octet <= OCTET_MAX:
            raise LabError(
                f"subnet octet {octet} out of range",
                f"choose X in {OCTET_MIN}..{OCTET_MAX} for 10.213.X.0/24",
            )
        owner = used.get(octet)
        if owner not in (None, bridge):
            raise LabError(
                f"10.213.{octet}.0/24 is already used by {owner}",
                "choose another --subnet octet or take that lab down",
            )
        return LabNet(lab, octet)
    start = derive_octet(lab)
    span = OCTET_MAX - OCTET_MIN + 1
    for step in range(span):
        candidate = OCTET_MIN + (start - OCTET_MIN + step) % span
        if used.get(candidate) in (None, bridge):
            return LabNet(lab, candidate)
    raise LabError("no free 10.213.X.0/24 subnet", "take other labs down: anywhere-agent lab down")


# -- changes (callers record each in the state file before calling) -----------------------


def create_bridge(net: LabNet) -> None:
    br = net.bridge
    if br not in link_names():
        system.run(
            ["ip", "link", "add", br, "type", "bridge", "forward_delay", "0", "stp_state", "0"],
            what=f"create bridge {br}",
        )
    system.run(["ip", "addr", "replace", f"{net.gateway}/24", "dev", br], what="bridge address")
    system.run(["ip", "link", "set", br, "up"], what=f"bring {br} up")


def create_host_link(net: LabNet, host: str) -> None:
    """netns + veth: the host end is eth0 inside its netns; the other end joins the bridge."""
    ns, veth, ip = net.netns(host), net.veth(host), net.host_ip(host)
    if ns not in netns_names():
        system.run(["ip", "netns", "add", ns], what=f"create netns {ns}")
    if veth not in link_names():
        system.run(
            ["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns],
            what=f"create veth {veth}",
        )
    system.run(["ip", "link", "set", veth, "master", net.bridge, "up"], what=f"attach {veth}")
    system.run(["ip", "-n", ns, "link", "set", "lo", "up"], what=f"lo up in {ns}")
    system.run(["ip", "-n", ns, "addr", "replace", f"{ip}/24", "dev", "eth0"], what=f"address {ip}")
    system.run(["ip", "-n", ns, "link", "set", "eth0", "up"], what=f"eth0 up in {ns}")
    # Deliberately no default route: the only route is the connected lab /24.


def delete_netns(name: str) -> None:
    if name in netns_names():
        # Deleting the netns destroys its veth end, which takes the bridge end with it.
        system.run(["ip", "netns", "delete", name], check=False, what=f"delete netns {name}")


def delete_link(name: str) -> None:
    if name in link_names():
        system.run(["ip", "link", "delete", name], check=False, what=f"delete {name}")


def leftovers(net_lab: str) -> dict[str, list[str]]:
    """Interfaces and namespaces that the naming convention says belong to this lab."""
    probe = LabNet(net_lab, 0)
    return {
        "interfaces": sorted(n for n in link_names() if probe.owns_iface(n)),
        "netns": sorted(n for n in netns_names() if probe.owns_netns(n)),
    }
