"""Proving the join: introspection, then the cloud's view of the container instance."""

from __future__ import annotations

import json
import logging
from typing import Any

from anywhere_agent.errors import NotJoinedError
from anywhere_agent.host import agent_files
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import Delta, Step

LOG = logging.getLogger(__name__)


class VerifyJoinStep(Step):
    """Introspection shows a ContainerInstanceArn; the cloud says ACTIVE and connected."""

    name, title = "verify-join", "prove the host joined its cluster"

    def check(self, ctx: InstallContext) -> Delta | None:
        # Always runs: proving the join is the point of install, and costs ~1 call when joined.
        return Delta("poll ECS introspection, then DescribeContainerInstances",
                     cloud=["ecs:DescribeContainerInstances (host credentials)"])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        deadline = ctx.clock() + ctx.cfg.join_timeout_seconds
        url = ctx.cfg.supervise.introspection_url.rstrip("/") + "/v1/metadata"
        arn = ""
        meta: dict[str, Any] = {}
        while True:
            status, body = ctx.http_get(url, 2.0)
            if status == 200:
                try:
                    meta = json.loads(body)
                except ValueError:
                    meta = {}
                arn = str(meta.get("ContainerInstanceArn") or "")
                if arn:
                    break
            if ctx.clock() > deadline:
                ecs = ctx.host.services.state(agent_files.ECS_UNIT)
                raise NotJoinedError(
                    f"no ContainerInstanceArn from ECS introspection within "
                    f"{ctx.cfg.join_timeout_seconds:.0f} s (ecs is {ecs.active_state})",
                    "see /var/log/ecs/ecs-agent.log; check cluster, region and credentials")
            ctx.sleep(0.25)
        if meta.get("Cluster") and meta["Cluster"] not in (ctx.cfg.cluster,) and \
                not str(meta["Cluster"]).endswith("/" + ctx.cfg.cluster):
            raise NotJoinedError(f"the ECS agent joined cluster {meta['Cluster']}, "
                                 f"not {ctx.cfg.cluster}",
                                 "re-run install: it moves the host to the configured cluster")
        ctx.report["container_instance_arn"] = arn
        ctx.report["ecs_agent_version"] = meta.get("Version", "")
        ctx.journal.set_identity(container_instance_arn=arn, cluster=ctx.cfg.cluster)
        ctx.report["cloud_verified"] = self._cloud(ctx, arn, deadline)
        return []

    def _cloud(self, ctx: InstallContext, arn: str, deadline: float) -> bool:
        clients = ctx.host_clients()
        if clients is None:
            ctx.note("could not verify ACTIVE/agentConnected: no host credentials")
            return False
        while True:
            try:
                resp = clients.client("ecs").describe_container_instances(
                    cluster=ctx.cfg.cluster, containerInstances=[arn])
            except Exception as err:  # noqa: BLE001 - the role may not allow Describe*
                from anywhere_agent.aws.clients import is_transient

                # Throttling or a 5xx says "not now", not "not allowed": poll on within the
                # join bound rather than give up verifying on one answer.
                if is_transient(err) and ctx.clock() <= deadline:
                    LOG.info("DescribeContainerInstances: %s; trying again", err)
                    ctx.sleep(0.5)
                    continue
                ctx.note(f"could not verify ACTIVE/agentConnected ({type(err).__name__}); "
                         "introspection shows the container instance ARN")
                return False
            inst = (resp.get("containerInstances") or [{}])[0]
            status, connected = inst.get("status"), inst.get("agentConnected")
            ctx.report["container_instance_status"] = status
            ctx.report["agent_connected"] = connected
            # DRAINING is an operator's choice (maintenance), not a failed join.
            if status in ("ACTIVE", "DRAINING") and connected:
                return True
            if ctx.clock() > deadline:
                raise NotJoinedError(f"container instance is {status}, agentConnected="
                                     f"{connected} after {ctx.cfg.join_timeout_seconds:.0f} s",
                                     "see /var/log/ecs/ecs-agent.log and the ecs endpoint/proxy")
            ctx.sleep(0.5)
