"""GPU hosts: Docker learns the `nvidia` runtime the ECS agent asks for (ECS_NVIDIA_RUNTIME)."""

from __future__ import annotations

import json

from anywhere_agent.errors import ConfigError
from anywhere_agent.host import agent_files, gpu
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import _docker_managed
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


def docker_runtime_step() -> FileStep:
    return FileStep("gpu-docker-runtime", "Docker's nvidia runtime for GPU tasks",
                    gpu.DOCKER_DAEMON_JSON, _daemon_json, mode=_keep_mode,
                    readers=(agent_files.DOCKER_UNIT,), when=_gpu_docker)
