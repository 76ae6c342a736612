"""A gate for rollouts: wait until named hosts are Online in SSM, ACTIVE in ECS and connected."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import tenacity

from anywhere_agent.aws.clients import Clients, TransientCloudError
from anywhere_agent.errors import WaitTimeoutError
from anywhere_agent.registrar import fleet
from anywhere_agent.registrar.fleet import FleetRow

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class HostState:
    host: str
    ready: bool
    reason: str
    instance_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "ready": self.ready, "reason": self.reason,
                "instance_id": self.instance_id or None}


@dataclass(frozen=True)
class Polled:
    """How a bounded poll ended: done, or not, and the AWS error of its last round if any."""

    done: bool
    error: TransientCloudError | None = None

    def why(self) -> str:
        return f"; the last poll failed: {self.error.message}" if self.error else ""


def poll_until(step: Callable[[], bool], timeout: timedelta, interval: float,
               sleep: Callable[[float], None] | None = None) -> Polled:
    """Run `step` until it returns True or `timeout` has passed: the polls start 0.5 s apart
    (or `interval`, if shorter) and the pause doubles up to `interval`, so a gate whose hosts
    are ready a moment after the first poll does not wait a whole interval for them.

    A round that AWS throttles or answers with a 5xx (after botocore's own retries, whose
    retry quota a long poll can use up) is a round that is not done yet: the next one may
    succeed, and only the time bound decides when to give up. Every other error ends the poll.
    """
    def on_retry(state: tenacity.RetryCallState) -> None:
        if state.outcome is not None and state.outcome.failed:
            LOG.warning("poll %s failed, trying again within the bound: %s",
                        state.attempt_number, state.outcome.exception())

    def gave_up(state: tenacity.RetryCallState) -> Polled:
        if state.outcome is not None and state.outcome.failed:
            err = state.outcome.exception()
            return Polled(False, err if isinstance(err, TransientCloudError) else None)
        return Polled(False)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout.total_seconds()),
        wait=tenacity.wait_exponential(multiplier=min(0.5, interval), max=interval),
        retry=(tenacity.retry_if_result(lambda polled: not polled.done)
               | tenacity.retry_if_exception_type(TransientCloudError)),
        before_sleep=on_retry,
        retry_error_callback=gave_up,
        sleep=sleep or tenacity.nap.sleep,
    )
    outcome: Polled = retrying(lambda: Polled(step()))
    return outcome


def _why_not(rows: Sequence[FleetRow]) -> str:
    """Why this host (its rows, best first) is not ready, or "" when it is."""
    in_ssm = [h for h in rows if h.in_ssm]
    if not in_ssm:
        return "not in SSM"
    online = [h for h in in_ssm if h.ping_status == "Online"]
    if not online:
        return f"SSM ping {in_ssm[0].ping_status or 'unknown'}"
    in_ecs = [h for h in online if h.in_ecs]
    if not in_ecs:
        return "not in the cluster"
    active = [h for h in in_ecs if h.container_instance_status == "ACTIVE"]
    if not active:
        return f"container instance {in_ecs[0].container_instance_status}"
    if not any(h.agent_connected for h in active):
        return "ECS agentConnected false"
    return ""


def check(view: fleet.Fleet, wanted: Sequence[str]) -> list[HostState]:
    """Pure: the state of each wanted host (a name or an `mi-` ID) in one fleet view."""
    by_key: dict[str, list[FleetRow]] = {}
    for h in view.hosts:
        for key in {h.instance_id, h.name.lower(), h.computer_name.lower()} - {""}:
            by_key.setdefault(key, []).append(h)
    states = []
    for want in wanted:
        rows = by_key.get(want if want.startswith("mi-") else want.lower(), [])
        reason = _why_not(rows)
        ids = sorted({h.instance_id for h in rows})
        states.append(HostState(want, not reason, reason or "ready", ",".join(ids)))
    return states


def wait(clients: Clients, hosts: Sequence[str], timeout: timedelta,
         clusters: Sequence[str] = (), interval: float = 5.0,
         sleep: Callable[[float], None] | None = None) -> list[HostState]:
    """Poll the fleet until every host is ready; WaitTimeoutError naming the laggards if not."""
    last: list[HostState] = []

    def poll() -> bool:
        nonlocal last
        last = check(fleet.collect(clients, clusters), hosts)
        waiting = [s.host for s in last if not s.ready]
        if waiting:
            LOG.info("waiting for %s of %s hosts: %s", len(waiting), len(hosts),
                     ", ".join(waiting[:10]))
        return not waiting

    polled = poll_until(poll, timeout, interval, sleep)
    if polled.done:
        return last
    laggards = [s for s in last if not s.ready] if last else \
        [HostState(h, False, "never seen: no poll succeeded") for h in hosts]
    raise WaitTimeoutError(
        f"{len(laggards)} of {len(hosts)} hosts not ready after "
        f"{int(timeout.total_seconds())}s: "
        + "; ".join(f"{s.host}: {s.reason}" for s in laggards) + polled.why(),
        "check those hosts with `anywhere-agent registrar fleet` and their agents' logs")
