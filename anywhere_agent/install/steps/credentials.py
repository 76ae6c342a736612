"""Waiting for the SSM agent's role credentials, then checking the cluster."""

from __future__ import annotations

import logging

from anywhere_agent.aws.skew import CLOCK_FIX, SKEW_CODES, is_clock_skew
from anywhere_agent.errors import CloudError
from anywhere_agent.host import agent_files
from anywhere_agent.host.agent_files import read_host_credentials
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.poll import poll
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


# The SSM agent fetches role credentials seconds after it starts registered.
CREDENTIALS_SECONDS = 60.0


class CredentialsStep(Step):
    """The SSM agent has fetched role credentials; then the cluster is checked with them."""

    name, title = "ssm-credentials", "wait for SSM role credentials"
    ends_undo = True  # the host's own credentials found the cluster: the inputs were right

    def check(self, ctx: InstallContext) -> Delta | None:
        if read_host_credentials(ctx.host) is not None and \
                ctx.journal.cluster_checked == ctx.cfg.cluster:
            return None
        return Delta(f"wait for {agent_files.HOST_CREDENTIALS}, then check cluster "
                     f"{ctx.cfg.cluster}",
                     cloud=[f"ecs:DescribeClusters {ctx.cfg.cluster}"])

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        found = poll(lambda: read_host_credentials(ctx.host), seconds=CREDENTIALS_SECONDS,
                     clock=ctx.clock, sleep=ctx.sleep, first=0.1, cap=0.5)
        if found is None:
            skew = _clock_skew_logged(ctx)
            if skew:
                raise CloudError("the SSM agent could not fetch role credentials: AWS "
                                 f"refused its request's time ({skew})", CLOCK_FIX)
            raise CloudError("the SSM agent did not fetch role credentials within "
                             f"{CREDENTIALS_SECONDS:.0f} s",
                             f"check the ssm endpoint/proxy and {agent_files.SSM_AGENT_LOG}")
        exists = cluster_exists(ctx)
        if exists is None:
            ctx.report["cluster_verified"] = False
        elif not exists:
            raise CloudError(f"ECS cluster {ctx.cfg.cluster!r} does not exist in "
                             f"{ctx.cfg.region}",
                             "create it (`anywhere-agent registrar ensure --cluster "
                             f"{ctx.cfg.cluster}`) or fix cluster/region")
        ctx.journal.record_cluster_checked(ctx.cfg.cluster)
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
