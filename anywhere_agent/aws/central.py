"""The central commands we print when a host cannot remove something with its own rights."""

from __future__ import annotations

import shlex


def deregister_command(region: str, instance_id: str, cluster: str = "") -> str:
    """The registrar command an operator runs (with the registrar's rights) to remove a host
    from SSM and, with a cluster, its container instance from ECS."""
    argv = ["anywhere-agent", "registrar", "deregister", "--region", region]
    if cluster:
        argv += ["--cluster", cluster]
    return shlex.join([*argv, instance_id])
