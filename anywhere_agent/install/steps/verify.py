"""Proving the join: introspection, then the cloud's view of the container instance."""

from __future__ import annotations

import json
import logging
from typing import Any

from anywhere_agent.errors import NotJoinedError
from anywhere_agent.host import agent_files
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.poll import poll
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

        def joined() -> dict[str, Any] | None:
            status, body = ctx.http_get(url, 2.0)
            if status != 200:
                return None
            try:
                meta = json.loads(body)
            except ValueError:
                return None
            return meta if isinstance(meta, dict) and meta.get("ContainerInstanceArn") else None

        # Issue 17: a host that joins within a second is noticed within a fraction of one.
        meta = poll(joined, seconds=ctx.cfg.join_timeout_seconds, clock=ctx.clock,
                    sleep=ctx.sleep, first=0.1, cap=0.5)
        if meta is None:
            ecs = ctx.host.services.state(agent_files.ECS_UNIT)
            raise NotJoinedError(
                f"no ContainerInstanceArn from ECS introspection within "
                f"{ctx.cfg.join_timeout_seconds:.0f} s (ecs is {ecs.active_state})",
                f"see {agent_files.ECS_AGENT_LOG}; check cluster, region and credentials")
        arn = str(meta["ContainerInstanceArn"])
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
        last: dict[str, Any] = {}

        def connected() -> bool | None:
            """True when ACTIVE and connected, False when it cannot be asked, None: not yet."""
            try:
                resp = clients.client("ecs").describe_container_instances(
                    cluster=ctx.cfg.cluster, containerInstances=[arn])
            except Exception as err:  # noqa: BLE001 - the role may not allow Describe*
                from anywhere_agent.aws.clients import is_transient

                # Throttling or a 5xx says "not now", not "not allowed": poll on within the
                # join bound rather than give up verifying on one answer.
                if is_transient(err):
                    LOG.info("DescribeContainerInstances: %s; trying again", err)
                    last["error"] = err
                    return None
                ctx.note(f"could not verify ACTIVE/agentConnected ({type(err).__name__}); "
                         "introspection shows the container instance ARN")
                return False
            last.pop("error", None)
            inst = (resp.get("containerInstances") or [{}])[0]
            last["status"], last["connected"] = inst.get("status"), inst.get("agentConnected")
            ctx.report["container_instance_status"] = last["status"]
            ctx.report["agent_connected"] = last["connected"]
            # DRAINING is an operator's choice (maintenance), not a failed join.
            return True if last["status"] in ("ACTIVE", "DRAINING") and last["connected"] \
                else None

        # Short and capped low, as the introspection poll: the agent opens ACS a moment after
        # it registers, and install should exit within half a second of the cloud seeing it.
        answer = poll(connected, seconds=max(0.0, deadline - ctx.clock()), clock=ctx.clock,
                      sleep=ctx.sleep, first=0.1, cap=0.5)
        if answer is not None:
            return answer
        if "error" in last:
            ctx.note(f"could not verify ACTIVE/agentConnected ({type(last['error']).__name__}); "
                     "introspection shows the container instance ARN")
            return False
        raise NotJoinedError(f"container instance is {last.get('status')}, agentConnected="
                             f"{last.get('connected')} after "
                             f"{ctx.cfg.join_timeout_seconds:.0f} s",
                             f"see {agent_files.ECS_AGENT_LOG} and the ecs endpoint/proxy")
