"""Waiting for the SSM agent's role credentials, then checking the cluster."""

from __future__ import annotations

import logging

from anywhere_agent.aws.skew import CLOCK_FIX, SKEW_CODES, is_clock_skew
from anywhere_agent.errors import CloudError
from anywhere_agent.host import agent_files
from anywhere_agent.host.agent_files import read_host_credentials
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import Delta, Step

LOG = logging.getLogger(__name__)


def cluster_exists(ctx: InstallContext) -> bool | None:
    """Whether the configured cluster is ACTIVE, asked with the host's credentials
    (ecs:DescribeClusters, granted by iam/host-role-extra.json); None when it cannot be asked."""
    clients = ctx.host_clients()
    if clients is None:
        return None
    try:
        resp = clients.client("ecs").describe_clusters(clusters=[ctx.cfg.cluster])
    except Exception as err:  # noqa: BLE001 - permission or network: cannot verify
        LOG.info("cluster check skipped: %s", type(err).__name__)
        return None
    return any(c.get("status") == "ACTIVE" for c in resp.get("clusters", []))


class CredentialsStep(Step):
    """The SSM agent has fetched role credentials; then the cluster is checked with them."""

    name, title = "ssm-credentials", "wait for SSM role credentials"

    def check(self, ctx: InstallContext) -> Delta | None:
        if read_host_credentials(ctx.host) is not None and ctx.journal.data.get("cluster_checked") \
                == ctx.cfg.cluster:
            return None
        return Delta(f"wait for {agent_files.HOST_CREDENTIALS}, then check cluster "
                     f"{ctx.cfg.cluster}",
                     cloud=[f"ecs:DescribeClusters {ctx.cfg.cluster}"])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        deadline = ctx.clock() + 60
        while read_host_credentials(ctx.host) is None:
            if ctx.clock() > deadline:
                skew = _clock_skew_logged(ctx)
                if skew:
                    raise CloudError("the SSM agent could not fetch role credentials: AWS "
                                     f"refused its request's time ({skew})", CLOCK_FIX)
                raise CloudError("the SSM agent did not fetch role credentials within 60 s",
                                 "check the ssm endpoint/proxy and "
                                 "/var/log/amazon/ssm/amazon-ssm-agent.log")
            ctx.sleep(0.25)
        exists = cluster_exists(ctx)
        if exists is None:
            ctx.report["cluster_verified"] = False
        elif not exists:
            raise CloudError(f"ECS cluster {ctx.cfg.cluster!r} does not exist in "
                             f"{ctx.cfg.region}",
                             "create it (`anywhere-agent registrar ensure --cluster "
                             f"{ctx.cfg.cluster}`) or fix cluster/region")
        ctx.journal.data["cluster_checked"] = ctx.cfg.cluster
        ctx.journal.save()
        return []


def _clock_skew_logged(ctx: InstallContext) -> str:
    """The SSM agent's last logged AWS error, when it is a refusal of the request's time."""
    text = ctx.host.read_text(agent_files.SSM_AGENT_LOG) or ""
    for line in reversed(text.splitlines()[-200:]):
        for code in sorted(SKEW_CODES):
            at = line.find(code + ":")
            if at >= 0:
                message = line[at + len(code) + 1:].strip()
                if is_clock_skew(code, message):
                    return f"{code}: {message}"[:200]
    return ""
