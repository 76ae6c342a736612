"""GPU preflight: the NVIDIA driver, its container runtime and Docker's runtime entry."""

from __future__ import annotations

from anywhere_agent.host import gpu
from anywhere_agent.preflight.context import PreflightContext
from anywhere_agent.preflight.model import CheckResult

_OFF = "enable_gpu is off"


def check_gpu_driver(ctx: PreflightContext) -> CheckResult:
    name = "gpu_driver"
    if not ctx.cfg.enable_gpu:
        return CheckResult(name, "skip", _OFF)
    driver = gpu.query_driver(ctx.host, timeout=max(ctx.timeout, 10.0))
    if not driver.ok:
        return CheckResult(name, "fail", driver.problem, gpu.DRIVER_FIX)
    return CheckResult(name, "pass", f"NVIDIA driver {driver.version}, "
                       f"{len(driver.gpus)} GPU(s): {', '.join(driver.gpus)}")


def check_gpu_container_runtime(ctx: PreflightContext) -> CheckResult:
    name = "gpu_container_runtime"
    if not ctx.cfg.enable_gpu:
        return CheckResult(name, "skip", _OFF)
    found = gpu.runtime_binary(ctx.host)
    if found is None:
        return CheckResult(name, "fail", f"{gpu.RUNTIME_BINARY} (NVIDIA Container Toolkit) "
                           "is not installed", gpu.TOOLKIT_FIX)
    return CheckResult(name, "pass", f"{found}")


def check_gpu_docker_runtime(ctx: PreflightContext) -> CheckResult:
    """Docker must know a runtime named `nvidia`: the ECS agent asks for it by that name."""
    name = "gpu_docker_runtime"
    if not ctx.cfg.enable_gpu:
        return CheckResult(name, "skip", _OFF)
    data, problem = gpu.read_daemon_json(ctx.host)
    if data is None:
        return CheckResult(name, "fail", problem,
                           f"fix the JSON in {gpu.DOCKER_DAEMON_JSON}, then "
                           + gpu.DOCKER_RUNTIME_FIX)
    if gpu.docker_has_runtime(data):
        return CheckResult(name, "pass", f"Docker runtime {gpu.RUNTIME_NAME!r} in "
                           f"{gpu.DOCKER_DAEMON_JSON}")
    missing = (f"Docker has no {gpu.RUNTIME_NAME!r} runtime in {gpu.DOCKER_DAEMON_JSON}")
    if ctx.cfg.docker_source != "none":
        # install adds the entry itself when it manages Docker; only a warning now.
        return CheckResult(name, "warn", missing + " (install adds it)",
                           "nothing before install; or " + gpu.DOCKER_RUNTIME_FIX)
    return CheckResult(name, "fail", missing, gpu.DOCKER_RUNTIME_FIX)


GPU_CHECKS = (check_gpu_driver, check_gpu_container_runtime, check_gpu_docker_runtime)
