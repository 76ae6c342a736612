"""Install steps: each answers "already satisfied?" (a Delta or None) and knows how to apply.

`check` only reads (files, package database, unit states, one read-only cloud call), so the plan
and `--dry-run` come from the same code that decides what apply does.
"""

from __future__ import annotations

import difflib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import tenacity

from anywhere_agent.aws.skew import CLOCK_FIX, is_clock_skew
from anywhere_agent.errors import ActivationError, CloudError, NotJoinedError, PreflightError
from anywhere_agent.install import keyvalue, layout
from anywhere_agent.install.context import (
    Activation,
    Context,
    machine_id,
    read_host_credentials,
    read_registration,
    registration_key_complete,
)
from anywhere_agent.install.registration import RegisterFailure
from anywhere_agent.install.registration import classify as classify_register
from anywhere_agent.secret import has_userinfo, redact_userinfo

LOG = logging.getLogger(__name__)


@dataclass
class FileChange:
    path: str
    old: str | None
    new: str | None
    mode: int = 0o644

    def diff(self) -> str:
        """The unified diff, proxy passwords masked: plans and --dry-run are output."""
        old = (self.old or "").splitlines(keepends=True)
        new = (self.new or "").splitlines(keepends=True)
        label_old = self.path if self.old is not None else "/dev/null"
        label_new = self.path if self.new is not None else "/dev/null"
        return redact_userinfo("".join(difflib.unified_diff(old, new, label_old, label_new)))


@dataclass
class Delta:
    """What a step would change; empty lists mean that kind of change is not involved."""

    summary: str
    files: list[FileChange] = field(default_factory=list)
    packages: list[str] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    cloud: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary,
            "files": [{"path": f.path, "action": "remove" if f.new is None else
                       ("create" if f.old is None else "update"), "diff": f.diff()}
                      for f in self.files],
            "packages": self.packages,
            "services": self.services,
            "cloud": self.cloud,
        }


class Step:
    name = "step"
    title = ""

    def applies(self, ctx: Context) -> bool:
        return True

    def guard(self, ctx: Context) -> None:
        """Raise a user error that no step could fix, before any step has touched the host."""

    def check(self, ctx: Context) -> Delta | None:
        raise NotImplementedError

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        raise NotImplementedError


# -- files ---------------------------------------------------------------------------------

Mode = int | Callable[[str, int | None], int]


def secret_mode(content: str, current: int | None) -> int:
    """0600 when the content holds credentials (a proxy password), else the file's mode stays
    (0644 for a new file): a shared file such as dnf.conf is never loosened, only tightened."""
    if has_userinfo(content):
        return 0o600
    return current if current is not None else 0o644


class FileStep(Step):
    """Keeps one file at rendered content (None = absent); notes which units read it.

    `mode` is fixed, or a function of (content, current mode) for files that hold a secret
    only sometimes; a re-run restores it on a file already on disk (tightening a 0644 secret).
    """

    def __init__(self, name: str, title: str, path: str | Callable[[Context], str],
                 render: Callable[[Context, str | None], str | None], mode: Mode = 0o644,
                 readers: tuple[str, ...] = (), unit_file: bool = False,
                 when: Callable[[Context], bool] = lambda ctx: True) -> None:
        self.name, self.title, self.path, self._render = name, title, path, render
        self.mode, self.readers, self.unit_file, self._when = mode, readers, unit_file, when

    def applies(self, ctx: Context) -> bool:
        return self._when(ctx)

    def node_path(self, ctx: Context) -> str:
        return self.path(ctx) if callable(self.path) else self.path

    def check(self, ctx: Context) -> Delta | None:
        path = self.node_path(ctx)
        old = ctx.host.read_text(path)
        new = self._render(ctx, old)
        if new is None:
            if old is None:
                return None
            return Delta(f"remove {path}", files=[FileChange(path, old, None)],
                         services=[f"restart {u}" for u in self.readers])
        current = ctx.host.mode(path)
        mode = self.mode(new, current) if callable(self.mode) else self.mode
        if old == new and current == mode:
            return None
        what = "update" if old != new or old is None else f"set mode {mode:04o} on"
        return Delta(f"{'create' if old is None else what} {path}",
                     files=[FileChange(path, old, new, mode)],
                     services=[f"restart {u}" for u in self.readers])

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        # Record consequences first: a run killed after the write still restarts the readers.
        for unit in self.readers:
            ctx.journal.add_pending_restart(unit)
        if self.unit_file:
            ctx.journal.add_pending_restart("daemon-reload")
        change = delta.files[0]
        if change.new is None:
            ctx.host.remove(change.path)
        else:
            ctx.host.write_atomic(change.path, change.new, change.mode)
        return [change.path]


def _env_value(value: str) -> str:
    """A value quoted for a systemd EnvironmentFile (C-style escapes inside double quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _proxy_environment(ctx: Context, no_proxy: str) -> dict[str, str]:
    env = ctx.cfg.proxy.environment()
    if not env:
        return {}
    keys: tuple[str, ...] = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")
    out: dict[str, str] = {k: env[k] for k in keys if k in env}
    if no_proxy:
        out["NO_PROXY"] = out["no_proxy"] = no_proxy
    return out


def _env_file(values: dict[str, str]) -> str | None:
    if not values:
        return None
    lines = ["# Written by anywhere-agent from agent.toml [proxy]; edits are overwritten."]
    lines += [f"{key}={_env_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _proxy_env(ctx: Context, old: str | None) -> str | None:
    return _env_file(_proxy_environment(ctx, ctx.cfg.proxy.no_proxy))


def _ecs_proxy_env(ctx: Context, old: str | None) -> str | None:
    # The ECS agent's bypass list is never empty (IMDS-style addresses, the Docker socket).
    return _env_file(_proxy_environment(ctx, _ecs_no_proxy(ctx)))


def _proxy_dropin_for(unit: str) -> Callable[[Context, str | None], str | None]:
    """The drop-in only names the 0600 file that holds the values: systemd shows a unit's
    Environment= lines to every local user (`systemctl show -p Environment`), and a proxy URL
    may carry a password."""

    def render(ctx: Context, old: str | None) -> str | None:
        if not ctx.cfg.proxy.environment():
            return None
        return ("# Written by anywhere-agent from agent.toml [proxy]; edits are overwritten.\n"
                f"[Service]\nEnvironmentFile={layout.proxy_env(unit)}\n")

    return render


def _ecs_no_proxy(ctx: Context) -> str:
    # The ECS agent must reach IMDS-style local endpoints and the Docker socket directly.
    base = ["169.254.169.254", "169.254.170.2", "/var/run/docker.sock"]
    extra = [p.strip() for p in ctx.cfg.proxy.no_proxy.split(",") if p.strip()]
    return ",".join(dict.fromkeys(base + extra))


def _apt_proxy(ctx: Context, old: str | None) -> str | None:
    if not ctx.cfg.proxy.enabled:
        return None
    lines = ["// Written by anywhere-agent from agent.toml [proxy]."]
    if ctx.cfg.proxy.http:
        lines.append(f'Acquire::http::Proxy "{ctx.cfg.proxy.http}";')
    if ctx.cfg.proxy.https or ctx.cfg.proxy.http:
        lines.append(f'Acquire::https::Proxy "{ctx.cfg.proxy.https or ctx.cfg.proxy.http}";')
    return "\n".join(lines) + "\n"


def _rpm_proxy(ctx: Context, old: str | None) -> str | None:
    # dnf/yum read `proxy=` from [main]. We only ever set it: a proxy the operator put there
    # before us is theirs to remove.
    proxy = ctx.cfg.proxy.https or ctx.cfg.proxy.http
    if not proxy:
        return old
    return keyvalue.set_ini_keys(old or "", "main", {"proxy": proxy})


def _zypper_proxy(ctx: Context, old: str | None) -> str | None:
    # SUSE's /etc/sysconfig/proxy (shell-style, quoted) is what zypper and YaST read.
    p = ctx.cfg.proxy
    if not p.enabled:
        return old
    return keyvalue.set_env_keys(old or "", {
        "PROXY_ENABLED": '"yes"',
        "HTTP_PROXY": f'"{p.http or p.https}"',
        "HTTPS_PROXY": f'"{p.https or p.http}"',
        "NO_PROXY": f'"{p.no_proxy}"' if p.no_proxy else None,
    })


def _rpm_conf(ctx: Context) -> str:
    return "/etc/yum.conf" if ctx.platform.package_manager == "yum" else "/etc/dnf/dnf.conf"


def _ssm_config(ctx: Context, old: str | None) -> str | None:
    ssm = ctx.cfg.endpoint("ssm")
    updates: dict[tuple[str, ...], Any] = {("Ssm", "Endpoint"): ssm or None}
    mds = ctx.cfg.endpoint("ec2messages")
    updates[("Mds", "Endpoint")] = mds or None
    mgs = ctx.cfg.endpoint("ssmmessages")
    updates[("Mgs", "Endpoint")] = mgs or None
    if old is None and not any(v is not None for v in updates.values()):
        return None  # nothing to say: keep the package's defaults, write no file
    return keyvalue.set_json_keys(old or "", updates)


def _agent_toml(ctx: Context, old: str | None) -> str | None:
    from anywhere_agent.config import load_config, render_toml

    new = render_toml(ctx.cfg)
    if old is not None:
        # Keep the operator's file (and its comments) when it already says the same thing.
        try:
            if load_config(ctx.host.root, {}, {}) == ctx.cfg:
                return old
        except Exception as err:  # noqa: BLE001 - an unreadable file is simply rewritten
            LOG.debug("rewriting agent.toml: %s", err)
    return new


def _json_map(values: Any) -> str | None:
    return json.dumps(dict(values), separators=(",", ":"), sort_keys=True) if values else None


def _ecs_config(ctx: Context, old: str | None) -> str:
    cfg = ctx.cfg
    proxy = cfg.proxy.https or cfg.proxy.http
    updates: dict[str, str | None] = {
        "ECS_CLUSTER": cfg.cluster,
        "ECS_LOGLEVEL": cfg.ecs_loglevel,
        "ECS_INSTANCE_ATTRIBUTES": _json_map(cfg.ecs_attributes),
        "ECS_CONTAINER_INSTANCE_TAGS": _json_map(cfg.ecs_tags),
        "HTTP_PROXY": proxy or None,
        "NO_PROXY": _ecs_no_proxy(ctx) if proxy else None,
    }
    return keyvalue.set_env_keys(old or "", updates)


def _ecs_var_config(ctx: Context, old: str | None) -> str:
    cfg = ctx.cfg
    backend = cfg.endpoint("ecs")
    updates: dict[str, str | None] = {
        "AWS_DEFAULT_REGION": cfg.region,
        "ECS_EXTERNAL": "true",
        "ECS_ENABLE_GPU_SUPPORT": "true" if cfg.enable_gpu else None,
        "ECS_BACKEND_HOST": backend or None,
    }
    return keyvalue.set_env_keys(old or "", updates)


def _unit(name: str) -> Callable[[Context, str | None], str | None]:
    def render(ctx: Context, old: str | None) -> str | None:
        from anywhere_agent.install.units import unit_text

        return unit_text(name)

    return render


def _docker_managed(ctx: Context) -> bool:
    return ctx.cfg.docker_source != "none"


def _is_deb(ctx: Context) -> bool:
    return ctx.platform.family == "deb"


def _is_rpm(ctx: Context) -> bool:
    return ctx.platform.family == "rpm"


def _is_suse(ctx: Context) -> bool:
    return ctx.platform.family == "suse"


# -- packages ------------------------------------------------------------------------------

def _record_installed(ctx: Context, package: str) -> None:
    """Uninstall removes only packages we installed (Docker included): remember them."""
    installed = set(ctx.journal.data.get("installed_packages", []))
    ctx.journal.data["installed_packages"] = sorted(installed | {package})
    ctx.journal.save()


class PackageStep(Step):
    def __init__(self, name: str, package: str,
                 when: Callable[[Context], bool] = lambda ctx: True) -> None:
        self.name, self.package, self._when = name, package, when
        self.title = f"install {package}"

    def applies(self, ctx: Context) -> bool:
        return self._when(ctx)

    def check(self, ctx: Context) -> Delta | None:
        if ctx.source.pm.installed_version(self.package):
            return None
        return Delta(f"install {ctx.source.describe(self.package)}", packages=[self.package])

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        ctx.source.install(self.package)
        _record_installed(ctx, self.package)
        return [f"package {self.package}"]


class DockerStep(Step):
    """Docker from the chosen source; satisfied by any engine that brings docker.service.

    On EL8/9 the distribution's `docker` is podman-docker: a `docker` command with no daemon
    and no docker.service, which the ECS agent cannot use. That is detected (installed, or
    what dnf would install) and stops the install with the fix instead of installing it.
    """

    name, title = "docker-package", "install Docker"

    def _package(self, ctx: Context) -> str:
        if ctx.cfg.docker_source == "docker":
            return "docker-ce"
        return {"deb": "docker.io", "suse": "docker"}.get(ctx.platform.family,
                                                          "moby-engine" if ctx.platform.distro
                                                          == "fedora" else "docker")

    def applies(self, ctx: Context) -> bool:
        return _docker_managed(ctx)

    def _engine_present(self, ctx: Context) -> bool:
        if ctx.host.services.state(layout.DOCKER_UNIT).exists:
            return True  # an engine is there (ours from an earlier run, or the operator's)
        return any(ctx.source.pm.installed_version(candidate)
                   for candidate in ("docker-ce", "docker.io", "moby-engine"))

    def guard(self, ctx: Context) -> None:
        if self._engine_present(ctx):
            return
        pm = ctx.source.pm
        daemonless = _daemonless_docker(ctx, pm.providers("docker"), available=False)
        if daemonless is None and _is_rpm(ctx) and ctx.cfg.docker_source == "distro":
            daemonless = _daemonless_docker(ctx, pm.providers(self._package(ctx),
                                                              available=True), available=True)
        if daemonless is not None:
            where = ctx.platform.pretty_name or ctx.platform.distro
            raise PreflightError(
                f"`docker` on {where} is {daemonless}, which has no docker.service for the "
                "ECS agent",
                "set docker_source = \"docker\" (Docker's own repository) in agent.toml, or "
                "install a Docker engine (docker-ce) before running install")

    def check(self, ctx: Context) -> Delta | None:
        if self._engine_present(ctx):
            return None
        self.guard(ctx)
        if ctx.source.pm.installed_version(self._package(ctx)):
            return None
        return Delta(f"install {self._package(ctx)} ({ctx.cfg.docker_source} source)",
                     packages=[self._package(ctx)])

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        if ctx.cfg.docker_source == "docker" and _is_deb(ctx):
            raise PreflightError("docker_source = docker needs Docker's apt repository configured",
                                 "add download.docker.com to the host's sources, or use distro")
        ctx.source.pm.refresh()
        ctx.source.pm.install([self._package(ctx)])
        _record_installed(ctx, self._package(ctx))
        return [f"package {self._package(ctx)}"]


def _daemonless_docker(ctx: Context, providers: list[str], *, available: bool) -> str | None:
    """The first provider of `docker` that ships no docker.service (podman-docker), if any."""
    for name in providers:
        files = ctx.source.pm.files(name, available=available)
        if not any(f.endswith("/docker.service") for f in files):
            return name
    return None


# -- services ------------------------------------------------------------------------------

class ServiceStep(Step):
    """Unit enabled and active; restarted only when a file it reads changed (pending)."""

    def __init__(self, name: str, unit: str,
                 when: Callable[[Context], bool] = lambda ctx: True) -> None:
        self.name, self.unit, self._when = name, unit, when
        self.title = f"run {unit}"

    def applies(self, ctx: Context) -> bool:
        return self._when(ctx)

    def check(self, ctx: Context) -> Delta | None:
        actions = []
        if "daemon-reload" in ctx.journal.pending_restarts():
            actions.append("daemon-reload")
        state = ctx.host.services.state(self.unit)
        if not state.enabled:
            actions.append(f"enable {self.unit}")
        if not state.active:
            actions.append(f"start {self.unit}")
        elif self.unit in ctx.journal.pending_restarts():
            actions.append(f"restart {self.unit}")
        if not actions:
            return None
        return Delta(", ".join(actions), services=actions)

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        svc = ctx.host.services
        if "daemon-reload" in delta.services:
            svc.daemon_reload()
            ctx.journal.clear_pending_restart("daemon-reload")
        if f"enable {self.unit}" in delta.services:
            svc.enable(self.unit)
        if f"start {self.unit}" in delta.services:
            svc.reset_failed(self.unit)
            svc.start(self.unit)
        elif f"restart {self.unit}" in delta.services:
            svc.restart(self.unit)
        ctx.journal.clear_pending_restart(self.unit)
        return [a for a in delta.services if a != "daemon-reload"]


# -- SSM registration -----------------------------------------------------------------------

def central_registration(ctx: Context, instance_id: str) -> str:
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


def deregister_own_registration(ctx: Context, instance_id: str) -> bool:
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

    def check(self, ctx: Context) -> Delta | None:
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
                if where == "unknown":
                    ctx.report["registration_verified"] = False
                return _unjournaled(ctx, reg)
        cloud = ["AmazonSSM.RegisterManagedInstance (by amazon-ssm-agent -register)"]
        delta = Delta(f"register: {reason}", cloud=cloud,
                      services=[f"restart {layout.SSM_UNIT}"],
                      data={"reason": reason, "old": reg})
        return delta

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        if delta.data.get("adopt"):
            # A registration finished by a run that was killed before journaling it: record it,
            # so clone detection (machine-id) and status know this identity. No code needed.
            reg = delta.data["adopt"]
            _journal_identity(ctx, reg, ctx.journal.identity.get("activation_id")
                              or (ctx.activation.activation_id if ctx.activation else ""))
            ctx.report["managed_instance_id"] = reg["ManagedInstanceID"]
            return [f"recorded identity {reg['ManagedInstanceID']}"]
        act = ctx.activation
        if act is None or not act.code or not act.activation_id:
            raise ActivationError(f"this host needs a registration ({delta.data['reason']}) "
                                  "but no activation was given",
                                  "pass --activation-id and the code via --activation-code-file, "
                                  "ANYWHERE_AGENT_ACTIVATION_CODE or standard input")
        old = delta.data.get("old") or {}
        reason = str(delta.data["reason"])
        if old:
            retired = ctx.journal.retire_identity(reason) or {
                "managed_instance_id": old.get("ManagedInstanceID"), "retired_reason": reason}
            ctx.report["previous_identity"] = retired
            ctx.note(f"replacing identity {old.get('ManagedInstanceID')}: {reason}")
        svc = ctx.host.services
        if svc.state(layout.SSM_UNIT).active:
            svc.stop(layout.SSM_UNIT)
        _register(ctx, act)
        reg = read_registration(ctx.host)
        if not reg:
            raise ActivationError("SSM registration reported success but wrote no registration",
                                  "check /var/log/amazon/ssm/amazon-ssm-agent.log")
        _journal_identity(ctx, reg, act.activation_id)
        # A new identity needs a new container instance: the old agent state belongs to the
        # old identity (and, for a clone, to the original host, which keeps using it).
        ctx.journal.add_pending_restart(layout.SSM_UNIT)
        if ctx.host.exists(layout.ECS_AGENT_DB):
            ctx.journal.add_pending_restart(layout.ECS_UNIT)
            if ctx.host.services.state(layout.ECS_UNIT).active:
                ctx.host.services.stop(layout.ECS_UNIT)
            ctx.host.remove(layout.ECS_AGENT_DB)
        ctx.report["managed_instance_id"] = reg["ManagedInstanceID"]
        return [f"registered {reg['ManagedInstanceID']}"]


# Throttling and SSM server errors are retried within this bound; every other cause is final.
REGISTER_ATTEMPTS = 5
REGISTER_RETRY_SECONDS = 60.0


def _register(ctx: Context, act: Activation) -> None:
    """Run `amazon-ssm-agent -register`; a failure becomes the cause the agent printed.

    The real agent takes the code only on its argv (core/agent_parser.go: `-code`; no
    environment variable, file or stdin), so the child is the one place the code is exposed:
    it runs contained (own process group, killed with this process) and only when needed.
    """
    argv = [layout.SSM_BINARY, "-register", "-code", act.code.reveal(),
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


def _journal_identity(ctx: Context, reg: dict[str, str], activation_id: str | None) -> None:
    ctx.journal.set_identity(managed_instance_id=reg["ManagedInstanceID"],
                             region=reg.get("Region") or ctx.cfg.region,
                             machine_id=machine_id(ctx.host), activation_id=activation_id or "",
                             registered_at=ctx.journal.identity.get("registered_at")
                             or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _unjournaled(ctx: Context, reg: dict[str, str]) -> Delta | None:
    """A valid registration the journal does not hold in full (a run killed right after
    `-register` finished): record it, or the next clone of this host goes undetected."""
    ident = ctx.journal.identity
    if ident.get("managed_instance_id") == reg["ManagedInstanceID"] and \
            ident.get("machine_id") and ident.get("region"):
        return None
    return Delta(f"record identity {reg['ManagedInstanceID']} (registered by an interrupted run)",
                 data={"adopt": reg})


def cluster_exists(ctx: Context) -> bool | None:
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

    def check(self, ctx: Context) -> Delta | None:
        if read_host_credentials(ctx.host) is not None and ctx.journal.data.get("cluster_checked") \
                == ctx.cfg.cluster:
            return None
        return Delta(f"wait for {layout.HOST_CREDENTIALS}, then check cluster {ctx.cfg.cluster}",
                     cloud=[f"ecs:DescribeClusters {ctx.cfg.cluster}"])

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
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


_SSM_AGENT_LOG = "/var/log/amazon/ssm/amazon-ssm-agent.log"


def _clock_skew_logged(ctx: Context) -> str:
    """The SSM agent's last logged AWS error, when it is a refusal of the request's time."""
    text = ctx.host.read_text(_SSM_AGENT_LOG) or ""
    for line in reversed(text.splitlines()[-200:]):
        for code in ("InvalidSignatureException", "SignatureDoesNotMatch",
                     "RequestTimeTooSkewed", "RequestExpired"):
            at = line.find(code + ":")
            if at >= 0:
                message = line[at + len(code) + 1:].strip()
                if is_clock_skew(code, message):
                    return f"{code}: {message}"[:200]
    return ""


class ClusterMoveStep(Step):
    """Moving to another cluster needs the agent's old state removed (AWS's procedure)."""

    name, title = "ecs-cluster-move", "move to the configured cluster"

    def check(self, ctx: Context) -> Delta | None:
        current = keyvalue.parse_env(ctx.host.read_text(layout.ECS_CONFIG) or "")
        old = current.get("ECS_CLUSTER")
        if old and old != ctx.cfg.cluster and ctx.host.exists(layout.ECS_AGENT_DB):
            return Delta(f"move from cluster {old} to {ctx.cfg.cluster}: stop ecs, remove "
                         f"{layout.ECS_AGENT_DB}", services=[f"stop {layout.ECS_UNIT}"])
        return None

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
        ctx.journal.add_pending_restart(layout.ECS_UNIT)
        if ctx.host.services.state(layout.ECS_UNIT).active:
            ctx.host.services.stop(layout.ECS_UNIT)
        ctx.host.remove(layout.ECS_AGENT_DB)
        return [f"removed {layout.ECS_AGENT_DB}"]


# -- proving the join ---------------------------------------------------------------------

class VerifyJoinStep(Step):
    """Introspection shows a ContainerInstanceArn; the cloud says ACTIVE and connected."""

    name, title = "verify-join", "prove the host joined its cluster"

    def check(self, ctx: Context) -> Delta | None:
        # Always runs: proving the join is the point of install, and costs ~1 call when joined.
        return Delta("poll ECS introspection, then DescribeContainerInstances",
                     cloud=["ecs:DescribeContainerInstances (host credentials)"])

    def apply(self, ctx: Context, delta: Delta) -> list[str]:
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
                ecs = ctx.host.services.state(layout.ECS_UNIT)
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

    def _cloud(self, ctx: Context, arn: str, deadline: float) -> bool:
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


# -- the ordered list ---------------------------------------------------------------------

def all_steps() -> list[Step]:
    """Every step in order; `applies` drops those the config does not need."""
    ssm, ecs, docker, agent = layout.SSM_UNIT, layout.ECS_UNIT, layout.DOCKER_UNIT, \
        layout.AGENT_UNIT
    return [
        FileStep("agent-config", "effective agent.toml", "/etc/anywhere-agent/agent.toml",
                 _agent_toml, mode=0o600, readers=(agent,)),
        FileStep("apt-proxy", "proxy for apt", layout.APT_PROXY_CONF, _apt_proxy,
                 mode=secret_mode, when=_is_deb),
        FileStep("rpm-proxy", "proxy for dnf/yum", _rpm_conf, _rpm_proxy, mode=secret_mode,
                 when=_is_rpm),
        FileStep("zypper-proxy", "proxy for zypper", "/etc/sysconfig/proxy", _zypper_proxy,
                 mode=secret_mode, when=_is_suse),
        PackageStep("ssm-agent-package", layout.SSM_PACKAGE),
        FileStep("ssm-agent-config", "SSM agent endpoints", layout.SSM_CONFIG, _ssm_config,
                 mode=secret_mode, readers=(ssm,)),
        FileStep("ssm-agent-proxy-env", "proxy values for the SSM agent",
                 layout.proxy_env(ssm), _proxy_env, mode=0o600, readers=(ssm,)),
        FileStep("ssm-agent-proxy", "proxy for the SSM agent",
                 layout.dropin(ssm, layout.PROXY_DROPIN), _proxy_dropin_for(ssm), mode=0o600,
                 readers=(ssm,), unit_file=True),
        FileStep("ssm-agent-restart-policy", "restart policy for the SSM agent",
                 layout.dropin(ssm, layout.RESTART_DROPIN),
                 _unit(f"{ssm}.service.d/{layout.RESTART_DROPIN}"), readers=(ssm,), unit_file=True),
        RegistrationStep(),
        ServiceStep("ssm-agent-service", ssm),
        CredentialsStep(),
        DockerStep(),
        FileStep("docker-proxy-env", "proxy values for Docker", layout.proxy_env(docker),
                 _proxy_env, mode=0o600, readers=(docker,), when=_docker_managed),
        FileStep("docker-proxy", "proxy for Docker", layout.dropin(docker, layout.PROXY_DROPIN),
                 _proxy_dropin_for(docker), mode=0o600, readers=(docker,), unit_file=True,
                 when=_docker_managed),
        ServiceStep("docker-service", docker, when=_docker_managed),
        PackageStep("ecs-init-package", layout.ECS_PACKAGE),
        ClusterMoveStep(),
        FileStep("ecs-config", "ECS agent config", layout.ECS_CONFIG, _ecs_config,
                 mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-var-config", "ECS external-instance config", layout.ECS_VAR_CONFIG,
                 _ecs_var_config, mode=secret_mode, readers=(ecs,)),
        FileStep("ecs-proxy-env", "proxy values for the ECS agent", layout.proxy_env(ecs),
                 _ecs_proxy_env, mode=0o600, readers=(ecs,)),
        FileStep("ecs-proxy", "proxy for the ECS agent", layout.dropin(ecs, layout.PROXY_DROPIN),
                 _proxy_dropin_for(ecs), mode=0o600, readers=(ecs,), unit_file=True),
        FileStep("ecs-restart-policy", "restart policy for the ECS agent",
                 layout.dropin(ecs, layout.RESTART_DROPIN),
                 _unit(f"{ecs}.service.d/{layout.RESTART_DROPIN}"), readers=(ecs,), unit_file=True),
        FileStep("supervisor-unit", "anywhere-agent supervisor unit", layout.AGENT_UNIT_PATH,
                 _unit("anywhere-agent.service"), readers=(agent,), unit_file=True),
        ServiceStep("ecs-service", ecs),
        ServiceStep("supervisor-service", agent),
        VerifyJoinStep(),
    ]
