"""The versions in use on a node: anywhere-agent, the SSM agent and ecs-init packages, and the
ECS agent as its introspection API reports it (for `anywhere-agent --version`)."""

from __future__ import annotations

import json

from anywhere_agent import __version__
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.host.packages import package_version

INTROSPECTION_URL = "http://127.0.0.1:51678"


def versions(host: Host, introspection_url: str = INTROSPECTION_URL,
             http_get: HttpGet = loopback_get, timeout: float = 1.0) -> dict[str, str | None]:
    """anywhere_agent, ssm_agent, ecs_init (package versions) and ecs_agent (None if silent)."""
    status, body = http_get(introspection_url.rstrip("/") + "/v1/metadata", timeout)
    ecs_agent: str | None = None
    if status == 200:
        try:
            value = json.loads(body).get("Version")
        except (ValueError, AttributeError):
            value = None
        ecs_agent = str(value) if value else None
    return {
        "anywhere_agent": __version__,
        "ssm_agent": package_version(host, agent_files.SSM_PACKAGE),
        "ecs_init": package_version(host, agent_files.ECS_PACKAGE),
        "ecs_agent": ecs_agent,
    }


def render(found: dict[str, str | None]) -> str:
    """The `--version` text: one `name version` line each; `-` for what is not installed."""
    labels = (("anywhere_agent", "anywhere-agent"), ("ssm_agent", "amazon-ssm-agent"),
              ("ecs_init", "amazon-ecs-init"), ("ecs_agent", "ecs-agent"))
    return "\n".join(f"{label} {found.get(key) or '-'}" for key, label in labels)
