"""The lab's services on the gateway: the control plane and the package server, as processes."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from anywhere_agent.errors import LabError
from anywhere_agent.lab import aptcache, image, system
from anywhere_agent.lab.network import LabNet
from anywhere_agent.lab.state import LabState
from anywhere_agent.lab.system import ProcessRef

if TYPE_CHECKING:
    from anywhere_agent.lab.orchestrator import Lab

CONTROL_PLANE_PORT = 4566
# Every other region the lab answers has its own port (AWS: one endpoint host per region), so
# an anonymous call (RegisterManagedInstance) belongs to the region whose endpoint it reached.
REGION_PORTS = {
    "us-east-1": 4571,
    "us-east-2": 4572,
    "us-west-2": 4573,
    "eu-west-1": 4574,
    "eu-central-1": 4575,
    "ap-southeast-2": 4576,
}
PACKAGE_PORT = 8080
SERVICE_START_TIMEOUT = 60.0


def start_service(
    lab: Lab,
    state: LabState,
    name: str,
    argv: list[str],
    host: str,
    port: int,
    env: Mapping[str, str] | None = None,
) -> ProcessRef:
    log_path = lab.dir / f"{name}.log"
    # Recorded before the process exists, so a crash right after still finds it by pid file.
    state.set_process(name, None, pid_file=str(lab.dir / f"{name}.pid"), log=str(log_path))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    ref = ProcessRef.of(proc.pid)
    state.set_process(
        name,
        ref,
        pid_file=str(lab.dir / f"{name}.pid"),
        log=str(log_path),
        url=f"http://{host}:{port}",
    )
    deadline = time.monotonic() + SERVICE_START_TIMEOUT
    while time.monotonic() < deadline:
        if not ref.alive():
            system.reap(ref.pid)
            raise LabError(
                f"lab {name} exited at start: {system.log_tail(log_path)}", f"read {log_path}"
            )
        if port_open(host, port):
            return ref
        time.sleep(0.1)
    raise LabError(
        f"lab {name} did not listen on {host}:{port} within {SERVICE_START_TIMEOUT:.0f}s",
        f"read {log_path}",
    )


def start_control_plane(lab: Lab, state: LabState, net: LabNet) -> str:
    argv = [
        sys.executable,
        "-m",
        "anywhere_agent.lab.control_plane",
        "--host",
        net.gateway,
        "--port",
        str(CONTROL_PLANE_PORT),
        "--region",
        lab.region,
        "--time-scale",
        f"{lab.time_scale:g}",
        "--pid-file",
        str(lab.dir / "control-plane.pid"),
    ]
    for region, port in REGION_PORTS.items():
        if region != lab.region:
            argv += ["--region-port", f"{region}={port}"]
    start_service(
        lab,
        state,
        "control-plane",
        argv,
        net.gateway,
        CONTROL_PLANE_PORT,
        env={"MOTO_IAM_LOAD_MANAGED_POLICIES": "true"},
    )
    return f"http://{net.gateway}:{CONTROL_PLANE_PORT}"


def start_package_server(lab: Lab, state: LabState, net: LabNet) -> str:
    root = ensure_repos(lab)
    argv = [
        sys.executable,
        "-m",
        "anywhere_agent.lab.pkgserver",
        "--host",
        net.gateway,
        "--port",
        str(PACKAGE_PORT),
        "--root",
        str(root),
        "--pid-file",
        str(lab.dir / "package-server.pid"),
        "--apt-cache",
        str(lab.cache_root / "apt"),
        "--apt-stats",
        str(lab.apt_stats_file),
        *aptcache.upstreams_to_args(lab.upstreams()),
        # The server reads apt's proxy itself: on argv a password would show in ps.
        "--apt-proxy-from-apt",
    ]
    start_service(lab, state, "package-server", argv, net.gateway, PACKAGE_PORT)
    return f"http://{net.gateway}:{PACKAGE_PORT}"


def ensure_repos(lab: Lab) -> Path:
    """The doubles' apt repo and S3 layout; build_repos itself reuses an unchanged build."""
    try:
        from anywhere_agent.lab.doubles.packaging import build_repos
    except ImportError as exc:
        raise LabError(
            "the lab agent doubles are not available (anywhere_agent.lab.doubles)",
            "install anywhere-agent[lab] from a complete checkout",
        ) from exc
    # One directory per version of the doubles: labs from different checkouts share the
    # cache, and one rebuilding in place would swap the packages under another's hosts.
    from anywhere_agent.lab import doubles

    digest = hashlib.sha256()
    for src in sorted(Path(doubles.__file__).parent.glob("*.py")):
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    out = lab.cache_root / f"repos-{digest.hexdigest()[:16]}"
    # Labs coming up together must not build into the same directory at once.
    with system.file_lock(
        lab.cache_root / "repos.lock", image.BUILD_LOCK_TIMEOUT, "package build"
    ):
        try:
            info = build_repos(out, signing_home=lab.cache_root / "repos-gnupg")
        except LabError:
            raise
        except Exception as exc:
            raise LabError(
                f"building the lab's agent-double packages failed: {exc}",
                "see anywhere_agent/lab/doubles/README.md for their build needs",
            ) from exc
    return Path(info.out_dir)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
