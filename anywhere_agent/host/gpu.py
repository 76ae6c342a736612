"""What a GPU host needs for ECS GPU tasks: the NVIDIA driver, container runtime, Docker entry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host

NVIDIA_SMI = "nvidia-smi"
# The runtime name the ECS agent asks Docker for (ECS_NVIDIA_RUNTIME, default "nvidia" in
# agent/config/config_unix.go); the binary the NVIDIA Container Toolkit installs for it.
RUNTIME_NAME = "nvidia"
RUNTIME_BINARY = "nvidia-container-runtime"
DOCKER_DAEMON_JSON = agent_files.DOCKER_DAEMON_JSON
# What `nvidia-ctk runtime configure --runtime=docker` writes, and so what install writes.
OUR_RUNTIME: dict[str, Any] = {"args": [], "path": RUNTIME_BINARY}
BIN_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin", "/usr/local/sbin", "/bin")

DRIVER_FIX = ("install the NVIDIA driver for this GPU and load it (nvidia-smi must list the "
              "GPU), or set enable_gpu = false")
TOOLKIT_FIX = ("install NVIDIA's nvidia-container-toolkit package (it brings "
               "nvidia-container-runtime) from NVIDIA's repository")
DOCKER_RUNTIME_FIX = ("nvidia-ctk runtime configure --runtime=docker && systemctl restart "
                      "docker (adds runtimes.nvidia to /etc/docker/daemon.json)")


@dataclass(frozen=True)
class Driver:
    """What `nvidia-smi` said: the driver version and GPU names, or why it said nothing."""

    ok: bool
    version: str = ""
    gpus: tuple[str, ...] = ()
    problem: str = ""


def query_driver(host: Host, timeout: float = 20.0) -> Driver:
    """Run `nvidia-smi --query-gpu`; it answers only when the driver is loaded and sees a GPU."""
    res = host.run([NVIDIA_SMI, "--query-gpu=driver_version,name", "--format=csv,noheader"],
                   timeout=timeout)
    if res.returncode == 127:
        return Driver(False, problem="nvidia-smi is not installed (no NVIDIA driver)")
    if not res.ok:
        return Driver(False, problem=f"nvidia-smi failed: {res.last_line()}")
    rows = [[c.strip() for c in line.split(",", 1)] for line in res.stdout.splitlines()
            if line.strip()]
    rows = [r for r in rows if len(r) == 2 and r[0]]
    if not rows:
        return Driver(False, problem="nvidia-smi lists no GPU")
    versions = sorted({r[0] for r in rows})
    return Driver(True, version=", ".join(versions), gpus=tuple(r[1] for r in rows))


def runtime_binary(host: Host) -> str | None:
    """Path of nvidia-container-runtime on the host, if installed in a standard bin dir."""
    return next((f"{d}/{RUNTIME_BINARY}" for d in BIN_DIRS
                 if host.exists(f"{d}/{RUNTIME_BINARY}")), None)


def read_daemon_json(host: Host) -> tuple[dict[str, Any] | None, str]:
    """Docker's daemon.json as a dict ({} when absent), or None and why it cannot be read."""
    text = host.read_text(DOCKER_DAEMON_JSON)
    if text is None or not text.strip():
        return {}, ""
    try:
        data = json.loads(text)
    except ValueError as err:
        return None, f"{DOCKER_DAEMON_JSON} is not valid JSON ({err})"
    if not isinstance(data, dict):
        return None, f"{DOCKER_DAEMON_JSON} is not a JSON object"
    return data, ""


def docker_has_runtime(data: dict[str, Any]) -> bool:
    runtimes = data.get("runtimes")
    return isinstance(runtimes, dict) and isinstance(runtimes.get(RUNTIME_NAME), dict) \
        and bool(runtimes[RUNTIME_NAME].get("path"))


def with_nvidia_runtime(data: dict[str, Any]) -> dict[str, Any]:
    """daemon.json with runtimes.nvidia added as `nvidia-ctk runtime configure` writes it;
    every other key (and an existing nvidia entry) is kept."""
    if docker_has_runtime(data):
        return data
    runtimes = dict(data.get("runtimes") or {})
    runtimes[RUNTIME_NAME] = dict(OUR_RUNTIME)
    return {**data, "runtimes": runtimes}


def without_our_runtime(data: dict[str, Any]) -> dict[str, Any]:
    """daemon.json with the runtimes.nvidia entry install wrote taken out again (an entry the
    operator changed since is theirs and stays); an empty `runtimes` goes with it."""
    runtimes = data.get("runtimes")
    if not isinstance(runtimes, dict) or runtimes.get(RUNTIME_NAME) != OUR_RUNTIME:
        return data
    rest = {k: v for k, v in runtimes.items() if k != RUNTIME_NAME}
    out = {k: v for k, v in data.items() if k != "runtimes"}
    return {**out, "runtimes": rest} if rest else out
