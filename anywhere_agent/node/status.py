"""`anywhere-agent status`: what this node is, as one dict (rendered as text or JSON)."""

from __future__ import annotations

import json
import time
from typing import Any

from anywhere_agent.config import Config
from anywhere_agent.host import agent_files, ecs_exec, pins
from anywhere_agent.host.agent_files import read_registration
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.host.versions import versions
from anywhere_agent.install.journal import Journal


def gather(cfg: Config, host: Host, http_get: HttpGet = loopback_get) -> dict[str, Any]:
    journal = Journal(host)
    reg = read_registration(host)
    status, body = http_get(cfg.supervise.introspection_url.rstrip("/") + "/v1/metadata", 2.0)
    meta: dict[str, Any] = {}
    if status == 200:
        try:
            meta = json.loads(body)
        except ValueError:
            meta = {}
    services = {}
    for unit in (agent_files.SSM_UNIT, agent_files.ECS_UNIT, agent_files.DOCKER_UNIT,
                 agent_files.AGENT_UNIT):
        st = host.services.state(unit)
        services[unit] = {"active": st.active_state, "sub": st.sub_state,
                          "enabled": st.unit_file_state or "not-found",
                          "restarts": st.n_restarts}
    creds_mtime = host.mtime(agent_files.HOST_CREDENTIALS)
    expires = agent_files.credentials_expires_at(host)
    last = journal.last_run
    # The metadata answer above serves versions() too: one introspection call.
    found = versions(host, http_get=lambda url, timeout: (status, body))
    return {
        "managed_instance_id": reg.get("ManagedInstanceID"),
        "region": reg.get("Region") or cfg.region or None,
        "cluster": meta.get("Cluster") or cfg.cluster,
        "container_instance_arn": meta.get("ContainerInstanceArn")
        or journal.identity.get("container_instance_arn"),
        "introspection": "answering" if status == 200 else "not answering",
        "versions": found,
        # Installed against pinned (agent.toml ecs_agent_version / ssm_agent_version).
        "pinned_versions": {
            key: pins.PinState(package, found.get(key), pins.pinned(cfg, package),
                               pins.ecs_agent_running(found.get("ecs_agent"))
                               if package == pins.ECS_PACKAGE else None).to_dict()
            for package, key in pins.STATUS_KEYS.items()},
        "services": services,
        "credentials": {
            "file": agent_files.HOST_CREDENTIALS,
            "present": creds_mtime is not None,
            "age_seconds": None if creds_mtime is None else round(time.time() - creds_mtime),
            "expires_at": expires,
        },
        "ecs_exec": ecs_exec.readiness(host).to_dict(),
        "identity": journal.identity,
        "previous_identities": journal.previous_identities,
        "last_install": {k: last.get(k) for k in ("kind", "result", "started_at", "finished_at",
                                                  "detail") if k in last},
    }


def render_text(st: dict[str, Any]) -> str:
    lines = [
        f"managed instance   {st['managed_instance_id'] or '-'} ({st['region'] or '-'})",
        f"cluster            {st['cluster']}",
        f"container instance {st['container_instance_arn'] or '-'}",
        f"introspection      {st['introspection']}",
        "versions           " + ", ".join(f"{k}={v or '-'}" for k, v in st["versions"].items()),
    ]
    lines += [f"{'pinned versions' if i == 0 else '':<19}"
              + pins.PinState(p["package"], p["installed"], p["pinned"] or "",
                              p.get("running")).describe()
              for i, p in enumerate(st.get("pinned_versions", {}).values())]
    for unit, s in st["services"].items():
        lines.append(f"service {unit:<11}{s['active']} ({s['enabled']}, {s['restarts']} restarts)")
    creds = st["credentials"]
    lines.append("credentials        " + (f"refreshed {creds['age_seconds']} s ago, expire "
                                         f"{creds['expires_at'] or 'unknown'}"
                                         if creds["present"] else "absent"))
    exec_ = st["ecs_exec"]
    lines.append("ecs exec           " + (f"ready (SSM binaries {exec_['version']})"
                                          if exec_["ready"] else
                                          "not ready: " + "; ".join(exec_["problems"])))
    last = st["last_install"]
    lines.append(f"last install       {last.get('result', 'never')} {last.get('finished_at', '')}"
                 + (f" - {last['detail']}" if last.get("detail") else ""))
    for old in st["previous_identities"]:
        lines.append(f"previous identity  {old.get('managed_instance_id')} "
                     f"({old.get('retired_reason', '')})")
    return "\n".join(lines)
