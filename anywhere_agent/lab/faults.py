"""Lab faults: marker files on hosts, control-plane rules, and central acts (deregister, expiry)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from anywhere_agent.errors import LabError
from anywhere_agent.host import agent_files
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab.control_plane.admin import LabAdmin, LabAdminError
from anywhere_agent.lab.control_plane.faults import FaultRule

if TYPE_CHECKING:
    from anywhere_agent.lab.orchestrator import Lab

API_FAULTS = ("throttle", "5xx", "latency", "deny")
CONTROL_PLANE_FAULTS = (*API_FAULTS, "expire-activation", "deregister", "acs-outage")


def fault(
    lab: Lab,
    kind: str,
    *,
    on: bool = True,
    hosts: Sequence[str] = (),
    service: str = "*",
    operation: str = "*",
    rate: float = 1.0,
    status: int = 500,
    latency_ms: int = 0,
    activation_id: str = "",
) -> dict[str, Any]:
    """Switch a fault on (or off with on=False).

    Host faults (ecs-hang, ecs-crash, ssm-stale) are marker files the agent doubles watch,
    on `hosts` (default all). API faults (throttle, 5xx, latency) are control-plane rules
    for service/operation at `rate`; expire-activation expires `activation_id`;
    deregister deregisters each of `hosts` centrally (SSM DeregisterManagedInstance);
    acs-outage refuses (off: allows again) ACS sessions of `hosts`, whose agents then read
    agentConnected=false and keep re-dialling.
    """
    if kind in hostlib.HOST_FAULTS:
        targets = [lab.host(n) for n in hosts] if hosts else lab.hosts()
        for h in targets:
            hostlib.set_fault(h, kind, on)
        return {"fault": kind, "on": on, "hosts": [h.name for h in targets]}
    if kind not in CONTROL_PLANE_FAULTS:
        raise LabError(
            f"unknown fault {kind!r}",
            f"use one of: {', '.join(hostlib.HOST_FAULTS + CONTROL_PLANE_FAULTS)}",
        )
    admin = _admin(lab)
    try:
        if kind in API_FAULTS:
            return _api_fault(
                admin, kind, on, service, operation, rate, status, latency_ms
            )
        if kind == "expire-activation":
            if not activation_id:
                raise LabError(
                    "expire-activation needs an activation id",
                    "pass --activation-id (from `aws ssm describe-activations`)",
                )
            admin.expire_activation(activation_id)
            return {"fault": kind, "activation_id": activation_id}
        if kind == "acs-outage":
            if not hosts:
                raise LabError("acs-outage needs the hosts to cut off", "pass --host n1 ...")
            ids = {name: _instance_id(lab, name) for name in hosts}
            for instance_id in ids.values():
                admin.refuse_acs(instance_id, refuse=on)
            return {"fault": kind, "on": on, "hosts": ids}
        return _deregister(lab, kind, hosts)
    except LabAdminError as exc:
        raise LabError(
            f"control plane refused the fault: {exc}",
            "check `anywhere-agent lab status`; the control plane log is "
            f"{lab.dir / 'control-plane.log'}",
        ) from exc


def _admin(lab: Lab) -> LabAdmin:
    url = lab.control_plane_url()
    return LabAdmin(url, timeout=10.0)


def _api_fault(
    admin: LabAdmin,
    kind: str,
    on: bool,
    service: str,
    operation: str,
    rate: float,
    status: int,
    latency_ms: int,
) -> dict[str, Any]:
    try:
        rule = FaultRule(
            kind=kind,
            service=service,
            operation=operation,
            rate=rate,
            status=status,
            latency_ms=latency_ms,
        )
    except ValueError as exc:
        raise LabError(str(exc), "see `anywhere-agent lab fault --help`") from exc
    # Rules for other kinds or targets stay; this switch replaces only its own.
    rules = [
        r
        for r in admin.faults()
        if (r.kind, r.service, r.operation) != (kind, service, operation)
    ]
    if on:
        rules.append(rule)
    admin.set_faults(rules)
    return {"fault": kind, "on": on, "rules": [r.to_json() for r in rules]}

def _deregister(lab: Lab, kind: str, hosts: Sequence[str]) -> dict[str, Any]:
    if not hosts:
        raise LabError("deregister needs the hosts to deregister", "pass --host n1 ...")
    import boto3  # the lab extra's boto3; the product path never imports lab

    ssm = boto3.client(
        "ssm",
        region_name=lab.region,
        endpoint_url=lab.control_plane_url(),
        # The lab account's documented root key (control_plane/principals.py).
        aws_access_key_id="lab",
        aws_secret_access_key="lab",  # noqa: S106
    )
    done: dict[str, str] = {}
    for name in hosts:
        instance_id = _instance_id(lab, name)
        ssm.deregister_managed_instance(InstanceId=instance_id)
        done[name] = instance_id
    return {"fault": kind, "deregistered": done}

def _instance_id(lab: Lab, name: str) -> str:
    """The host's managed instance ID, as its SSM agent recorded it."""
    proc = lab.exec(name, ["cat", agent_files.SSM_REGISTRATION], check=False)
    instance_id = agent_files.parse_registration(proc.stdout.decode(errors="replace")).instance_id
    if not instance_id:
        raise LabError(
            f"{name} is not registered with SSM", f"install the node agent on {name} first"
        )
    return instance_id
