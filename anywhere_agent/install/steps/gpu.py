"""GPU hosts: Docker learns the `nvidia` runtime the ECS agent asks for (ECS_NVIDIA_RUNTIME)."""

from __future__ import annotations

import json

from anywhere_agent.errors import ConfigError
from anywhere_agent.host import agent_files, gpu
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import Delta, _docker_managed
from anywhere_agent.install.steps.files import FileStep


def _gpu_docker(ctx: InstallContext) -> bool:
    # With docker_source = none the operator owns Docker's configuration (preflight says so).
    return ctx.cfg.enable_gpu and _docker_managed(ctx)


def _daemon_json(ctx: InstallContext, old: str | None) -> str | None:
    """daemon.json with runtimes.nvidia added, every other key kept; unchanged when present."""
    data, problem = gpu.read_daemon_json(ctx.host)
    if data is None:
        raise ConfigError(problem, f"fix the JSON in {gpu.DOCKER_DAEMON_JSON}, then run install "
                          "again")
    if gpu.docker_has_runtime(data):
        return old
    return json.dumps(gpu.with_nvidia_runtime(data), indent=2, sort_keys=True) + "\n"


def _keep_mode(content: str, current: int | None) -> int:
    return current if current is not None else 0o644


# Journal key: install added runtimes.nvidia ("added") or created daemon.json for it
# ("created"), so uninstall takes out exactly that (node/uninstall.py).
JOURNAL_KEY = "gpu_docker_runtime"


class DockerRuntimeStep(FileStep):
    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        if JOURNAL_KEY not in ctx.journal.data:
            # Recorded before the write, like a pending restart: a killed run still knows.
            ctx.journal.data[JOURNAL_KEY] = "created" if delta.files[0].old is None else "added"
            ctx.journal.save()
        return super().apply(ctx, delta)


def docker_runtime_step() -> FileStep:
    return DockerRuntimeStep("gpu-docker-runtime", "Docker's nvidia runtime for GPU tasks",
                             gpu.DOCKER_DAEMON_JSON, _daemon_json, mode=_keep_mode,
                             readers=(agent_files.DOCKER_UNIT,), when=_gpu_docker)


def undo_docker_runtime(ctx: InstallContext) -> str | None:
    """For uninstall: take out the runtime entry install added (the file, if install created
    it and nothing else is in it); what it did, or None when there is nothing of ours."""
    how = ctx.journal.data.get(JOURNAL_KEY)
    if how not in ("added", "created"):
        return None
    data, _ = gpu.read_daemon_json(ctx.host)
    if data is None or not gpu.docker_has_runtime(data):
        return None  # unreadable now, or already gone: not ours to repair
    rest = gpu.without_our_runtime(data)
    if rest == data:
        return None
    if not rest and how == "created":
        ctx.host.remove(gpu.DOCKER_DAEMON_JSON)
        return f"removed {gpu.DOCKER_DAEMON_JSON}"
    mode = ctx.host.mode(gpu.DOCKER_DAEMON_JSON) or 0o644
    ctx.host.write_atomic(gpu.DOCKER_DAEMON_JSON,
                          json.dumps(rest, indent=2, sort_keys=True) + "\n", mode)
    return f"removed runtimes.nvidia from {gpu.DOCKER_DAEMON_JSON}"
