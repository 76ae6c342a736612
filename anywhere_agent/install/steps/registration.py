"""The SSM registration: register, adopt, or replace this host's identity."""

from __future__ import annotations

import logging
import time
from typing import Any

import tenacity

from anywhere_agent.config import ACTIVATION_CODE_ENV as CODE_ENV
from anywhere_agent.errors import ActivationError
from anywhere_agent.host import agent_files
from anywhere_agent.host.agent_files import (
    machine_id,
    read_registration,
    registration_key_complete,
)
from anywhere_agent.install.context import Activation, InstallContext
from anywhere_agent.install.registration import RegisterFailure
from anywhere_agent.install.registration import classify as classify_register
from anywhere_agent.install.steps.base import Delta, Step, Undo, UnitAction, Verb

LOG = logging.getLogger(__name__)


def central_registration(ctx: InstallContext, instance_id: str) -> str:
    """"present", "absent" or "unknown" for `instance_id`, asked with the host's credentials."""
    clients = ctx.host_clients()
    if clients is None:
        return "unknown"
    try:
        resp = clients.client("ssm").describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}])
    except Exception as err:  # noqa: BLE001 - any failure here means "could not verify"
        from anywhere_agent.aws.clients import error_code

        if error_code(err) == "InvalidInstanceId":
            return "absent"
        LOG.info("could not check registration centrally: %s", type(err).__name__)
        return "unknown"
    infos = resp.get("InstanceInformationList", [])
    return "present" if any(i.get("InstanceId") == instance_id for i in infos) else "absent"


def deregister_own_registration(ctx: InstallContext, instance_id: str) -> bool:
    """Deregister this host's managed instance with its own credentials, which the
    registrar's host policy allows for the host itself only (iam/host-role-extra.json);
    False when the host may not or cannot (then it must be removed centrally)."""
    clients = ctx.host_clients()
    if clients is None:
        return False
    try:
        clients.client("ssm").deregister_managed_instance(InstanceId=instance_id)
    except Exception as err:  # noqa: BLE001 - denied, expired or unreachable: report, go on
        from anywhere_agent.aws.clients import error_code

        # InvalidInstanceId too: this run registered it, so "unknown" means another region
        # than the one asked, not gone.
        LOG.info("could not deregister %s with the host's credentials: %s", instance_id,
                 error_code(err) or type(err).__name__)
        return False
    return True


class RegistrationStep(Step):
    name, title = "ssm-registration", "register with SSM"

    def __init__(self) -> None:
        self._verified: bool | None = None  # what the last check learned from SSM

    def guard(self, ctx: InstallContext) -> None:
        if ctx.activation is not None:
            return
        delta = self.check(ctx)
        if delta is not None and not delta.data.get("adopt"):
            raise ActivationError(
                f"this host needs an SSM registration ({delta.data['reason']}) but no "
                "activation code was given",
                f"pass --activation-id and --activation-code-file (or {CODE_ENV})")

    def findings(self) -> dict[str, Any]:
        return {"registration_verified": False} if self._verified is False else {}

    def check(self, ctx: InstallContext) -> Delta | None:
        self._verified = None
        reg = read_registration(ctx.host)
        ident = ctx.journal.identity
        reason = ""
        if not reg or not registration_key_complete(ctx.host):
            reason = "not registered" if not reg else "an earlier registration was interrupted"
        elif reg["Region"] and reg["Region"] != ctx.cfg.region:
            reason = f"registered in {reg['Region']}, configured for {ctx.cfg.region}"
        elif ident.get("machine_id") and ident.get("machine_id") != machine_id(ctx.host):
            reason = "machine-id changed since registration (cloned host)"
        elif ctx.force_reregister:
            reason = "re-registration requested (--reregister)"
        else:
            where = central_registration(ctx, reg["ManagedInstanceID"])
            if where == "absent":
                reason = "the registration no longer exists in SSM (deregistered centrally)"
            else:
                self._verified = where == "present"
                return _unjournaled(ctx, reg)
        cloud = ["AmazonSSM.RegisterManagedInstance (by amazon-ssm-agent -register)"]
        delta = Delta(f"register: {reason}", cloud=cloud,
                      services=[UnitAction(Verb.RESTART, agent_files.SSM_UNIT)],
                      data={"reason": reason, "old": reg})
        return delta

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        if delta.data.get("adopt"):
            # A registration finished by a run that was killed before journaling it: record it,
            # so clone detection (machine-id) and status know this identity. No code needed.
            reg = delta.data["adopt"]
            _journal_identity(ctx, reg, ctx.journal.identity.get("activation_id")
                              or (ctx.activation.activation_id if ctx.activation else ""))
            ctx.report["managed_instance_id"] = ctx.registered_now = reg["ManagedInstanceID"]
            return [f"recorded identity {reg['ManagedInstanceID']}"]
        act = ctx.activation
        if act is None or not act.code or not act.activation_id:
            raise ActivationError(f"this host needs a registration ({delta.data['reason']}) "
                                  "but no activation was given",
                                  "pass --activation-id and the code via --activation-code-file, "
                                  f"{CODE_ENV} or standard input")
        old = delta.data.get("old") or {}
        reason = str(delta.data["reason"])
        if old:
            retired = ctx.journal.retire_identity(reason) or {
                "managed_instance_id": old.get("ManagedInstanceID"), "retired_reason": reason}
            ctx.report["previous_identity"] = retired
            ctx.note(f"replacing identity {old.get('ManagedInstanceID')}: {reason}")
        svc = ctx.host.services
        if svc.state(agent_files.SSM_UNIT).active:
            svc.stop(agent_files.SSM_UNIT)
        _register(ctx, act)
        reg = read_registration(ctx.host)
        if not reg:
            raise ActivationError("SSM registration reported success but wrote no registration",
                                  "check /var/log/amazon/ssm/amazon-ssm-agent.log")
        _journal_identity(ctx, reg, act.activation_id)
        # A new identity needs a new container instance: the old agent state belongs to the
        # old identity (and, for a clone, to the original host, which keeps using it).
        ctx.journal.add_pending_restart(agent_files.SSM_UNIT)
        if ctx.host.exists(agent_files.ECS_AGENT_DB):
            ctx.journal.add_pending_restart(agent_files.ECS_UNIT)
            if ctx.host.services.state(agent_files.ECS_UNIT).active:
                ctx.host.services.stop(agent_files.ECS_UNIT)
            ctx.host.remove(agent_files.ECS_AGENT_DB)
        ctx.report["managed_instance_id"] = ctx.registered_now = reg["ManagedInstanceID"]
        return [f"registered {reg['ManagedInstanceID']}"]

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
        def clear() -> None:
            # Remove this run's managed instance from SSM first: the files below hold
            # the only credentials that may do it.
            mine = read_registration(ctx.host).get("ManagedInstanceID", "")
            if mine and deregister_own_registration(ctx, mine):
                ctx.deregistered_again = mine
            svc = ctx.host.services
            if svc.state(agent_files.SSM_UNIT).active:
                svc.stop(agent_files.SSM_UNIT)
            ctx.host.run([agent_files.SSM_BINARY, "-register", "-clear"], timeout=60)
            for path in (agent_files.SSM_REGISTRATION, agent_files.SSM_REGISTRATION_KEY,
                         agent_files.HOST_CREDENTIALS):
                ctx.host.remove(path)
            ctx.journal.clear_identity()

        return Undo("clear the new SSM registration", clear)

    def keeps_earlier(self, ctx: InstallContext, delta: Delta) -> bool:
        # An old identity is never restored by undo: once replaced, nothing before is undone.
        before = (delta.data.get("old") or {}).get("ManagedInstanceID", "")
        return bool(before) and before != read_registration(ctx.host).get("ManagedInstanceID")


# Throttling and SSM server errors are retried within this bound; every other cause is final.
REGISTER_ATTEMPTS = 5
REGISTER_RETRY_SECONDS = 60.0


def _register(ctx: InstallContext, act: Activation) -> None:
    """Run `amazon-ssm-agent -register`; a failure becomes the cause the agent printed.

    The real agent takes the code only on its argv (core/agent_parser.go: `-code`; no
    environment variable, file or stdin), so the child is the one place the code is exposed:
    it runs contained (own process group, killed with this process) and only when needed.
    """
    argv = [agent_files.SSM_BINARY, "-register", "-code", act.code.reveal(),
            "-id", act.activation_id, "-region", ctx.cfg.region, "-y"]
    attempts = 0

    def once() -> RegisterFailure | None:
        nonlocal attempts
        attempts += 1
        res = ctx.host.run(argv, env=ctx.cfg.proxy.environment(), timeout=120, contained=True)
        if res.ok:
            return None
        found = classify_register(f"{res.stdout}\n{res.stderr}", act.code.reveal())
        LOG.info("amazon-ssm-agent -register failed (%s, attempt %d)", found.cause, attempts)
        return found

    retrying = tenacity.Retrying(
        stop=(tenacity.stop_after_attempt(REGISTER_ATTEMPTS)
              | tenacity.stop_after_delay(REGISTER_RETRY_SECONDS)),
        wait=tenacity.wait_exponential(multiplier=1, min=1, max=15),
        retry=tenacity.retry_if_result(lambda f: f is not None and f.retryable),
        sleep=ctx.sleep, retry_error_callback=_last_result,
    )
    failure = retrying(once)
    if failure is not None:
        raise failure.error(ctx.cfg.region, act.activation_id, attempts)


def _last_result(state: tenacity.RetryCallState) -> Any:
    return state.outcome.result() if state.outcome is not None else None


def _journal_identity(ctx: InstallContext, reg: dict[str, str], activation_id: str | None) -> None:
    ctx.journal.set_identity(managed_instance_id=reg["ManagedInstanceID"],
                             region=reg.get("Region") or ctx.cfg.region,
                             machine_id=machine_id(ctx.host), activation_id=activation_id or "",
                             registered_at=ctx.journal.identity.get("registered_at")
                             or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _unjournaled(ctx: InstallContext, reg: dict[str, str]) -> Delta | None:
    """A valid registration the journal does not hold in full (a run killed right after
    `-register` finished): record it, or the next clone of this host goes undetected."""
    ident = ctx.journal.identity
    if ident.get("managed_instance_id") == reg["ManagedInstanceID"] and \
            ident.get("machine_id") and ident.get("region"):
        return None
    return Delta(f"record identity {reg['ManagedInstanceID']} (registered by an interrupted run)",
                 data={"adopt": reg})
