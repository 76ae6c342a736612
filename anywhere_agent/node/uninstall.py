"""`anywhere-agent uninstall`: drain check, deregister both sides, stop, remove what we made.

Independent actions all run; their errors are collected and reported together. Nothing outside
what the install wrote is deleted: container volumes, images and /var/lib/docker stay.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from anywhere_agent.aws.central import deregister_command
from anywhere_agent.errors import AgentError, NetworkError, PartialFailure, RefusedError
from anywhere_agent.host import agent_files, ecs_exec, keyvalue
from anywhere_agent.host.agent_files import read_registration
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.journal import install_lock
from anywhere_agent.install.steps.gpu import JOURNAL_KEY as GPU_RUNTIME_KEY
from anywhere_agent.install.steps.gpu import undo_docker_runtime

LOG = logging.getLogger(__name__)

# Files and directories the install writes (and the agents' own state for our identity).
OWNED_PATHS = (
    agent_files.ECS_CONFIG, agent_files.ECS_VAR_CONFIG, agent_files.ECS_AGENT_DB,
    agent_files.APT_PROXY_CONF,
    agent_files.AGENT_UNIT_PATH,
    agent_files.proxy_dropin(agent_files.ECS_UNIT),
    agent_files.restart_dropin(agent_files.ECS_UNIT),
    agent_files.proxy_dropin(agent_files.SSM_UNIT),
    agent_files.restart_dropin(agent_files.SSM_UNIT),
    agent_files.proxy_dropin(agent_files.DOCKER_UNIT),
    agent_files.SSM_REGISTRATION, agent_files.SSM_REGISTRATION_KEY, agent_files.HOST_CREDENTIALS,
)
OWNED_DIRS = (agent_files.SSM_VAULT, agent_files.SSM_RUNTIME_CONFIG,
              agent_files.PACKAGE_CACHE, agent_files.CONFIG_DIR,
              ecs_exec.ROOT)  # install made it, as AWS's script does (no package owns it)


@dataclass
class UninstallResult:
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    left_in_cloud: list[str] = field(default_factory=list)
    central_command: str = ""  # what an operator runs to remove what is left in the cloud

    def to_dict(self) -> dict[str, Any]:
        return {"done": self.done, "errors": self.errors, "left_in_cloud": self.left_in_cloud,
                "central_command": self.central_command}


def running_tasks(ctx: InstallContext) -> int | None:
    """Tasks the local agent runs (introspection), or None when it does not answer."""
    status, body = ctx.http_get(ctx.cfg.supervise.introspection_url.rstrip("/") + "/v1/tasks",
                                2.0)
    if status != 200:
        return None
    try:
        tasks = json.loads(body).get("Tasks") or []
    except (ValueError, AttributeError):
        return None
    return sum(1 for t in tasks if t.get("KnownStatus") not in ("STOPPED",))


def _drain_check(ctx: InstallContext, force: bool) -> None:
    """Refuse while tasks run. When the agent does not answer, tasks may still run (a hung
    agent, a stopped one with live containers): that refuses too, unless --force."""
    if force:
        return
    tasks = running_tasks(ctx)
    if tasks:
        raise RefusedError(f"{tasks} task(s) still run on this host",
                           "drain it first (registrar / UpdateContainerInstancesState DRAINING) "
                           "or pass --force")
    if tasks is None and _agent_present(ctx):
        raise RefusedError("cannot tell whether tasks run here: the ECS agent's introspection "
                           f"({ctx.cfg.supervise.introspection_url}) does not answer",
                           "start ecs and drain the host, check `docker ps`, or pass --force")


def _agent_present(ctx: InstallContext) -> bool:
    """Whether an ECS agent could be running tasks (installed, or its state or unit exists)."""
    return (ctx.host.exists(agent_files.ECS_AGENT_DB)
            or ctx.host.services.state(agent_files.ECS_UNIT).exists)


def _ssm_config_cleanup(ctx: InstallContext) -> Callable[[], object] | None:
    """Our endpoint keys out of the SSM agent's config; the file goes when nothing else is left
    (install created it: the package ships only a .template)."""
    text = ctx.host.read_text(agent_files.SSM_CONFIG)
    if text is None:
        return None
    rest = keyvalue.set_json_keys(text, {("Ssm", "Endpoint"): None, ("Mds", "Endpoint"): None,
                                         ("Mgs", "Endpoint"): None})
    try:
        left = {k: v for k, v in json.loads(rest).items() if v not in ({}, None)}
    except ValueError:
        return None  # not ours to repair
    if not left:
        return partial(ctx.host.remove, agent_files.SSM_CONFIG)
    mode = ctx.host.mode(agent_files.SSM_CONFIG) or 0o644
    return partial(ctx.host.write_atomic, agent_files.SSM_CONFIG,
                   json.dumps(left, indent=2, sort_keys=True) + "\n", mode)


def _in_cloud(doing: str, call: Callable[[], object]) -> Callable[[], object]:
    """`call` with AWS errors mapped to ours; an unreachable endpoint stops the uninstall
    before anything local changes, since removing the agents would orphan the identity."""
    def run() -> object:
        from anywhere_agent.aws.clients import aws_errors

        try:
            with aws_errors(doing):
                return call()
        except NetworkError as err:
            raise _Unreachable(err.message, err.fix + "; or uninstall with --force-local and "
                               "remove the identity centrally (`anywhere-agent registrar "
                               "deregister --region REGION mi-...`)") from None
    return run


def _deregister_managed_instance(clients: Any, instance_id: str) -> None:
    import botocore.exceptions

    from anywhere_agent.aws.clients import error_code

    try:
        clients.client("ssm").deregister_managed_instance(InstanceId=instance_id)
    except botocore.exceptions.ClientError as err:
        if error_code(err) != "InvalidInstanceId":  # already gone counts as done
            raise


class _Unreachable(NetworkError):
    """Raised through `attempt`, which collects every other failure."""


def uninstall(ctx: InstallContext, *, keep_packages: bool = False, force: bool = False,
              force_local: bool = False) -> UninstallResult:
    result = UninstallResult()

    def attempt(what: str, action: Callable[[], object]) -> bool:
        try:
            action()
            result.done.append(what)
            return True
        except _Unreachable:
            raise
        except AgentError as err:
            result.errors.append(f"{what}: {err}")
        except Exception as err:  # noqa: BLE001 - collect every failure, report together
            result.errors.append(f"{what}: {type(err).__name__}: {err}")
        return False

    _drain_check(ctx, force)
    with install_lock(ctx.host):
        ident = ctx.journal.identity
        reg = read_registration(ctx.host)
        mi = reg.get("ManagedInstanceID") or ident.get("managed_instance_id", "")
        arn = ident.get("container_instance_arn", "")
        clients = None if force_local else ctx.host_clients()
        if force_local:
            result.left_in_cloud += [x for x in (mi, arn) if x]
        elif clients is None and (mi or arn):
            result.errors.append("no host credentials to deregister with; re-run with "
                                 "--force-local and deregister centrally (command below)")
            result.left_in_cloud += [x for x in (mi, arn) if x]
        elif clients is not None:
            ecs = clients.client("ecs")
            cluster = ident.get("cluster") or ctx.cfg.cluster
            if arn and not attempt(f"deregister container instance {arn}", _in_cloud(
                    f"deregistering container instance {arn}",
                    lambda: ecs.deregister_container_instance(
                        cluster=cluster, containerInstance=arn, force=force))):
                result.left_in_cloud.append(arn)
            # The host may deregister only itself, and only when the registrar's host policy
            # is attached (iam/host-role-extra.json); what it may not, the registrar removes
            # centrally (the command is printed). An unreachable endpoint still stops here.
            if mi:
                try:
                    _in_cloud(f"deregistering managed instance {mi}",
                              partial(_deregister_managed_instance, clients, mi))()
                    result.done.append(f"deregister managed instance {mi}")
                except _Unreachable:
                    raise
                except AgentError as err:
                    LOG.info("managed instance %s left for the registrar: %s", mi, err)
                    result.left_in_cloud.append(mi)
        if mi and mi in result.left_in_cloud:
            in_ecs = bool(arn) and arn in result.left_in_cloud
            cluster_left = (ident.get("cluster") or ctx.cfg.cluster) if in_ecs else ""
            result.central_command = deregister_command(ctx.cfg.region, mi, cluster_left)
        svc = ctx.host.services
        for unit in (agent_files.AGENT_UNIT, agent_files.ECS_UNIT, agent_files.SSM_UNIT):
            if svc.state(unit).exists:
                attempt(f"stop and disable {unit}", partial(svc.disable, unit, now=True))
        if not keep_packages:
            installed = ctx.journal.installed_packages()
            for pkg in (agent_files.ECS_PACKAGE, agent_files.SSM_PACKAGE):
                if ctx.source.pm.installed_version(pkg):
                    attempt(f"remove package {pkg}", partial(ctx.source.pm.remove, [pkg]))
            for pkg in installed:
                # Docker only if we installed it; `remove` keeps /var/lib/docker (volumes).
                if pkg not in (agent_files.ECS_PACKAGE, agent_files.SSM_PACKAGE) and \
                        ctx.source.pm.installed_version(pkg):
                    attempt(f"remove package {pkg} (data kept)",
                            partial(ctx.source.pm.remove, [pkg]))
        for path in OWNED_PATHS:
            if ctx.host.exists(path):
                attempt(f"remove {path}", partial(ctx.host.remove, path))
        ssm_cleanup = _ssm_config_cleanup(ctx)
        if ssm_cleanup is not None:
            attempt(f"remove our endpoints from {agent_files.SSM_CONFIG}", ssm_cleanup)
        for directory in OWNED_DIRS:
            if ctx.host.exists(directory):
                attempt(f"remove {directory}", partial(ctx.host.remove_tree, directory))
        # Docker keeps running on it until its next restart; no GPU task is left to need it.
        if ctx.journal.data.get(GPU_RUNTIME_KEY):
            attempt(f"remove the nvidia runtime install added to "
                    f"{agent_files.DOCKER_DAEMON_JSON}", partial(undo_docker_runtime, ctx))
        attempt("systemctl daemon-reload", svc.daemon_reload)
    # The state dir goes last, after the lock (which lives in it) is released.
    attempt(f"remove {agent_files.STATE_DIR}", lambda: ctx.host.remove_tree(agent_files.STATE_DIR))
    if result.errors:
        fix = "fix each item and re-run `anywhere-agent uninstall`"
        if result.central_command:
            # What the host could not remove in the cloud must not be lost with the error.
            fix += f"; remove what is left in the cloud with: {result.central_command}"
        raise PartialFailure("uninstall finished with errors", result.errors, fix)
    return result
