"""An Ansible inventory built from the fleet view: what SSM and ECS see, grouped for targeting."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any

from anywhere_agent.registrar.fleet import FLAGS, Fleet, FleetRow

# The playbooks' default group: every host with an SSM identity.
NODES = "anywhere_agent_nodes"
# Hostvar holding the fleet's row for the host (the inventory's own facts).
FLEET_VAR = "anywhere_agent_fleet"
_ROW_KEYS = ("instance_id", "computer_name", "ip_address", "region", "cluster",
             "ping_status", "ping_age_s", "agent_version", "container_instance_arn",
             "container_instance_status", "agent_connected", "ecs_agent_version",
             "running_tasks", "health", "flags")


def group(prefix: str, value: str) -> str:
    """A valid Ansible group name: lower case, anything but [a-z0-9_] as `_`."""
    return f"{prefix}_{re.sub(r'[^a-z0-9_]', '_', value.lower())}"


def _groups(h: FleetRow) -> list[str]:
    if not h.in_ssm:
        # No SSM identity: no name and no address to reach it by, so only its flags.
        return list(h.flags)
    found = [NODES, *h.flags]
    if h.region:
        found.append(group("region", h.region))
    if h.ping_status:
        found.append(group("ssm", h.ping_status))
    if h.agent_version:
        found.append(group("ssm_agent", h.agent_version))
    if h.in_ecs:
        found += [group("cluster", h.cluster), group("ecs", h.container_instance_status)]
        if h.ecs_agent_version:
            found.append(group("ecs_agent", h.ecs_agent_version))
    return found


def ansible(view: Fleet) -> dict[str, Any]:
    """Dynamic-inventory JSON (`--list` with `_meta.hostvars`), pure.

    One inventory host per SSM identity (region, `mi-` ID), named by its computer name, or
    `name_mi-...` where several identities share one. A second container instance of the
    same identity adds its groups to that host. Each host's `ansible_host` is the address
    SSM reports; `ecs_anywhere_node_region` and `_cluster` are what AWS says it is in.
    """
    identities: dict[tuple[str, str], list[FleetRow]] = {}
    for h in view.hosts:
        identities.setdefault((h.region, h.instance_id), []).append(h)
    shared = Counter(rows[0].name.lower() for rows in identities.values())
    members: defaultdict[str, set[str]] = defaultdict(set)
    for name in (NODES, *FLAGS):
        members[name] = set()
    hostvars: dict[str, dict[str, Any]] = {}
    for (_, instance_id), rows in identities.items():
        first = rows[0]
        name = first.name if shared[first.name.lower()] == 1 else f"{first.name}_{instance_id}"
        row = first.to_dict()
        host_vars: dict[str, Any] = {FLEET_VAR: {k: row[k] for k in _ROW_KEYS}}
        hostvars[name] = host_vars
        if first.ip_address:
            host_vars["ansible_host"] = first.ip_address
        if first.region:
            host_vars["ecs_anywhere_node_region"] = first.region
        if first.cluster:
            host_vars["ecs_anywhere_node_cluster"] = first.cluster
        for h in rows:
            for g in _groups(h):
                members[g].add(name)
    doc: dict[str, Any] = {"_meta": {"hostvars": hostvars},
                           "all": {"children": sorted(members)}}
    for g, names in members.items():
        doc[g] = {"hosts": sorted(names)}
    return doc
