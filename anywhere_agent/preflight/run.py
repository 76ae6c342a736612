"""The ordered table of preflight checks and `run_preflight`, which runs them all."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Union

from anywhere_agent.config import Config
from anywhere_agent.errors import AgentError
from anywhere_agent.host.gateway import Host
from anywhere_agent.preflight import checks, ecs_exec, gpu, reach
from anywhere_agent.preflight.context import (
    DiskFree,
    MemoryTotal,
    PreflightContext,
    disk_free,
    memory_total,
)
from anywhere_agent.preflight.model import CheckResult, PreflightReport
from anywhere_agent.preflight.network import Connector, tcp_connect

LOG = logging.getLogger(__name__)

Check = Callable[[PreflightContext], Union[CheckResult, Sequence[CheckResult]]]

# Order is the order of the report: what makes everything else moot comes first.
CHECKS: tuple[tuple[str, Check], ...] = (
    ("root", checks.check_root),
    ("systemd", checks.check_systemd),
    ("platform", checks.check_platform),
    ("disk", checks.check_disk),
    ("memory", checks.check_memory),
    ("time_sync", checks.check_time_sync),
    ("cgroup", checks.check_cgroup),
    ("masked_units", checks.check_masked_units),
    *((c.__name__.removeprefix("check_"), c) for c in checks.WRITABLE_CHECKS),
    ("credentials_env", checks.check_credentials_env),
    ("credentials_file", checks.check_credentials_file),
    ("instance_role", reach.check_instance_role),
    ("registration", checks.check_registration),
    ("reachability", reach.check_reachability),
    ("clock_skew", reach.check_clock_skew),
    ("ca_bundle", ecs_exec.check_ca_bundle),
    *((c.__name__.removeprefix("check_"), c) for c in gpu.GPU_CHECKS),
)


def _run_one(name: str, check: Check, ctx: PreflightContext) -> list[CheckResult]:
    try:
        out = check(ctx)
    except AgentError as err:
        # A host that refuses a read (permissions, I/O) fails that check, not the report.
        LOG.debug("preflight check %s raised %s", name, type(err).__name__)
        return [CheckResult(name, "fail", err.message, err.fix)]
    return [out] if isinstance(out, CheckResult) else list(out)


def run_preflight(
    cfg: Config,
    host: Host,
    env: Mapping[str, str],
    *,
    euid: int,
    machine: str,
    network: bool = True,
    connect: Connector = tcp_connect,
    disk_free: DiskFree = disk_free,
    memory_total: MemoryTotal = memory_total,
    timeout: float = 3.0,
    now: Callable[[], float] = time.time,
) -> PreflightReport:
    """Run every check in CHECKS order; nothing is changed on the host.

    `connect` opens every probe socket (tests pass one that maps names to loopback);
    `network=False` skips the IMDS and reachability probes; `timeout` bounds each probe.
    """
    ctx = PreflightContext(cfg=cfg, host=host, env=env, euid=euid, machine=machine, network=network,
                  connect=connect, disk_free=disk_free, memory_total=memory_total,
                  timeout=timeout, now=now)
    results: list[CheckResult] = []
    for name, check in CHECKS:
        results.extend(_run_one(name, check, ctx))
    report = PreflightReport(tuple(results))
    LOG.debug("preflight: %s", report.summary_line())
    return report
