"""The lab's services on the gateway: the control plane and the package server, as processes."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
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

LOG = logging.getLogger(__name__)

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
# One build of the doubles' packages per version of their sources (see ensure_repos).
REPOS_DIR = re.compile(r"repos-[0-9a-f]{16}")
REPOS_GRACE = 3600.0


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
    ref = system.spawn(argv, log_path, {**os.environ, **(env or {})})
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
        # Marks the build as in use, so a lab coming up elsewhere does not prune it in the
        # moment before this lab's package server starts serving it.
        os.utime(out)
        prune_repos(lab.cache_root, keep=out, served=served_repos())
    return Path(info.out_dir)


def prune_repos(
    cache_root: Path, keep: Path, served: set[Path], now: float | None = None
) -> list[Path]:
    """Remove builds of older doubles: `repos-<hash>` but `keep`, the served and the recent.

    A build stays while a package server serves it (its lab still installs from it) and for
    REPOS_GRACE after its last use (a lab between its build and its package server's start).
    Runs under repos.lock, so no build is half-made. Returns what it removed.
    """
    now = time.time() if now is None else now
    keep, served = keep.resolve(), {p.resolve() for p in served}
    removed: list[Path] = []
    for old in sorted(cache_root.glob("repos-*")):
        if not REPOS_DIR.fullmatch(old.name) or not old.is_dir() or old.resolve() == keep:
            continue
        if old.resolve() in served or now - old.stat().st_mtime < REPOS_GRACE:
            continue
        LOG.info("removing outdated agent-double packages %s", old)
        system.remove_tree(old)
        removed.append(old)
    return removed


def served_repos() -> set[Path]:
    """The roots running lab package servers serve (any lab on this machine)."""
    roots: set[Path] = set()
    for pid in system.iter_pids():
        argv = system.cmdline(pid)
        if "anywhere_agent.lab.pkgserver" in argv and "--root" in argv[:-1]:
            roots.add(Path(argv[argv.index("--root") + 1]))
    return roots


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
