"""Files the install keeps at rendered content: FileStep and the renderers."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from typing import Any

from anywhere_agent.host import agent_files, keyvalue
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import (
    DAEMON_RELOAD,
    Delta,
    FileChange,
    Mode,
    Step,
    Undo,
    UnitAction,
    Verb,
)

LOG = logging.getLogger(__name__)


class FileStep(Step):
    """Keeps one file at rendered content (None = absent); notes which units read it.

    `mode` is fixed, or a function of (content, current mode) for files that hold a secret
    only sometimes; a re-run restores it on a file already on disk (tightening a 0644 secret).
    """

    def __init__(self, name: str, title: str, path: str | Callable[[InstallContext], str],
                 render: Callable[[InstallContext, str | None], str | None], mode: Mode = 0o644,
                 readers: tuple[str, ...] = (), unit_file: bool = False,
                 when: Callable[[InstallContext], bool] = lambda ctx: True) -> None:
        self.name, self.title, self.path, self._render = name, title, path, render
        self.mode, self.readers, self.unit_file, self._when = mode, readers, unit_file, when

    def applies(self, ctx: InstallContext) -> bool:
        return self._when(ctx)

    def node_path(self, ctx: InstallContext) -> str:
        return self.path(ctx) if callable(self.path) else self.path

    def check(self, ctx: InstallContext) -> Delta | None:
        path = self.node_path(ctx)
        old = ctx.host.read_text(path)
        new = self._render(ctx, old)
        if new is None:
            if old is None:
                return None
            return Delta(f"remove {path}", files=[FileChange(path, old, None)],
                         services=self._restarts())
        current = ctx.host.mode(path)
        mode = self.mode(new, current) if callable(self.mode) else self.mode
        if old == new and current == mode:
            return None
        what = "update" if old != new or old is None else f"set mode {mode:04o} on"
        return Delta(f"{'create' if old is None else what} {path}",
                     files=[FileChange(path, old, new, mode)],
                     services=self._restarts())

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        # Record consequences first: a run killed after the write still restarts the readers.
        for unit in self.readers:
            ctx.journal.add_pending_restart(unit)
        if self.unit_file:
            ctx.journal.add_pending_restart(DAEMON_RELOAD.verb.value)
        change = delta.files[0]
        if change.new is None:
            ctx.host.remove(change.path)
        else:
            ctx.host.write_atomic(change.path, change.new, change.mode)
        return [change.path]

    def undo(self, ctx: InstallContext, delta: Delta) -> Undo | None:
        change = delta.files[0]
        mode = ctx.host.mode(change.path) or 0o644
        # Directories the write will create, deepest first, so undo removes them too.
        new_dirs = []
        parent = ctx.host.path(change.path).parent
        while not parent.exists():
            new_dirs.append(parent)
            parent = parent.parent

        def restore() -> None:
            if change.old is None:
                ctx.host.remove(change.path)
                for d in new_dirs:
                    try:
                        d.rmdir()
                    except OSError:
                        break
            else:
                ctx.host.write_atomic(change.path, change.old, mode)

        return Undo(f"restore {change.path}", restore)

    def _restarts(self) -> list[UnitAction]:
        return [UnitAction(Verb.RESTART, unit) for unit in self.readers]


def _env_value(value: str) -> str:
    """A value quoted for a systemd EnvironmentFile (C-style escapes inside double quotes)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _proxy_environment(ctx: InstallContext, no_proxy: str) -> dict[str, str]:
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


def _proxy_env(ctx: InstallContext, old: str | None) -> str | None:
    return _env_file(_proxy_environment(ctx, ctx.cfg.proxy.no_proxy))


def _ecs_proxy_env(ctx: InstallContext, old: str | None) -> str | None:
    # The ECS agent's bypass list is never empty (IMDS-style addresses, the Docker socket).
    return _env_file(_proxy_environment(ctx, _ecs_no_proxy(ctx)))


def _proxy_dropin_for(unit: str) -> Callable[[InstallContext, str | None], str | None]:
    """The drop-in only names the 0600 file that holds the values: systemd shows a unit's
    Environment= lines to every local user (`systemctl show -p Environment`), and a proxy URL
    may carry a password."""

    def render(ctx: InstallContext, old: str | None) -> str | None:
        if not ctx.cfg.proxy.environment():
            return None
        return ("# Written by anywhere-agent from agent.toml [proxy]; edits are overwritten.\n"
                f"[Service]\nEnvironmentFile={agent_files.proxy_env(unit)}\n")

    return render


def _ecs_no_proxy(ctx: InstallContext) -> str:
    # The ECS agent must reach IMDS-style local endpoints and the Docker socket directly.
    base = ["169.254.169.254", "169.254.170.2", "/var/run/docker.sock"]
    extra = [p.strip() for p in ctx.cfg.proxy.no_proxy.split(",") if p.strip()]
    return ",".join(dict.fromkeys(base + extra))


def _apt_proxy(ctx: InstallContext, old: str | None) -> str | None:
    if not ctx.cfg.proxy.enabled:
        return None
    lines = ["// Written by anywhere-agent from agent.toml [proxy]."]
    if ctx.cfg.proxy.http:
        lines.append(f'Acquire::http::Proxy "{ctx.cfg.proxy.http}";')
    if ctx.cfg.proxy.https or ctx.cfg.proxy.http:
        lines.append(f'Acquire::https::Proxy "{ctx.cfg.proxy.https or ctx.cfg.proxy.http}";')
    return "\n".join(lines) + "\n"


def _rpm_proxy(ctx: InstallContext, old: str | None) -> str | None:
    # dnf/yum read `proxy=` from [main]. We only ever set it: a proxy the operator put there
    # before us is theirs to remove.
    proxy = ctx.cfg.proxy.https or ctx.cfg.proxy.http
    if not proxy:
        return old
    return keyvalue.set_ini_keys(old or "", "main", {"proxy": proxy})


def _zypper_proxy(ctx: InstallContext, old: str | None) -> str | None:
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


def _rpm_conf(ctx: InstallContext) -> str:
    return "/etc/yum.conf" if ctx.platform.package_manager == "yum" else "/etc/dnf/dnf.conf"


def _ssm_config(ctx: InstallContext, old: str | None) -> str | None:
    ssm = ctx.cfg.endpoint("ssm")
    updates: dict[tuple[str, ...], Any] = {("Ssm", "Endpoint"): ssm or None}
    mds = ctx.cfg.endpoint("ec2messages")
    updates[("Mds", "Endpoint")] = mds or None
    mgs = ctx.cfg.endpoint("ssmmessages")
    updates[("Mgs", "Endpoint")] = mgs or None
    if old is None and not any(v is not None for v in updates.values()):
        return None  # nothing to say: keep the package's defaults, write no file
    return keyvalue.set_json_keys(old or "", updates)


def _agent_toml(ctx: InstallContext, old: str | None) -> str | None:
    from anywhere_agent.config import load_config, render_toml

    on_file = None
    if old is not None:
        try:
            on_file = load_config(ctx.host.root, {}, {})
        except Exception as err:  # noqa: BLE001 - an unreadable file is simply rewritten
            LOG.debug("rewriting agent.toml: %s", err)
    # The ActivationId is the one value not written back: it travels with its code (a flag or
    # the environment, once per registration), so a file that says the same about everything
    # else stays as the operator (or Ansible's template) wrote it, on every run.
    want = dataclasses.replace(ctx.cfg, activation_id=on_file.activation_id if on_file else "")
    if on_file is not None and on_file == want:
        return old  # keep the operator's file, and its comments
    return render_toml(want)


def _json_map(values: Any) -> str | None:
    return json.dumps(dict(values), separators=(",", ":"), sort_keys=True) if values else None


def _ecs_config(ctx: InstallContext, old: str | None) -> str:
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


def _ecs_var_config(ctx: InstallContext, old: str | None) -> str:
    cfg = ctx.cfg
    backend = cfg.endpoint("ecs")
    updates: dict[str, str | None] = {
        "AWS_DEFAULT_REGION": cfg.region,
        "ECS_EXTERNAL": "true",
        "ECS_ENABLE_GPU_SUPPORT": "true" if cfg.enable_gpu else None,
        "ECS_BACKEND_HOST": backend or None,
    }
    return keyvalue.set_env_keys(old or "", updates)


def _unit(name: str) -> Callable[[InstallContext, str | None], str | None]:
    def render(ctx: InstallContext, old: str | None) -> str | None:
        from anywhere_agent.install.units import unit_text

        return unit_text(name)

    return render
