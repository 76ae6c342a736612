"""Fixtures for the conformance tier: the lab's control plane in-process on loopback, and one
node, a private mount namespace running the REAL SSM and ECS agents against it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytest imports test modules in importlib mode, which leaves sys.path alone; the helpers here
# are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from conformance_node import (
    CLUSTER,
    ECS_LOG,
    LAB_MINUTES,
    SAMPLE_EVERY,
    SSM_LOG,
    RealNode,
    Sample,
    Window,
)
from real_agents import (
    AGENTS_ENV,
    Binaries,
    Namespace,
    Trap,
    locate,
    port_free,
    skip_reason,
    wait_for,
)

from anywhere_agent.lab.control_plane.server import ControlPlane

KEEP_ENV = "ANYWHERE_CONFORMANCE_KEEP"  # keep the node's files and logs for a post-mortem

# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def scratch() -> Iterator[Path]:
    """Our own directory, not pytest's shared temp root: other pytest runs on the machine prune
    that, and the namespace's overlays live here while the agents run."""
    if skip_reason():
        pytest.skip(skip_reason() or "")
    path = Path(tempfile.mkdtemp(prefix="anywhere-conformance-"))
    try:
        yield path
    finally:
        if os.environ.get(KEEP_ENV):
            print(f"conformance: kept {path} ({KEEP_ENV} is set)")
        else:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def binaries(scratch: Path) -> Binaries:
    try:
        return locate(os.environ[AGENTS_ENV], scratch / "unpacked")
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.fail(f"{AGENTS_ENV}: {err}", pytrace=False)


@pytest.fixture(scope="module")
def node(binaries: Binaries, shared_control_plane: ControlPlane,
         scratch: Path) -> Iterator[RealNode]:
    """A fresh lab state and one namespace; everything started in it is killed by PID after."""
    scale = getattr(shared_control_plane.clock, "scale", 1.0)
    if scale != 1.0:
        pytest.fail(f"the lab clock runs at time scale {scale}; the real agents keep real time, "
                    "so the conformance tier needs scale 1", pytrace=False)
    shared_control_plane.reset()
    # AWS authorizes every call: the agents act with the managed policies of the role our
    # registrar made, the registrar with its published policy.
    enforced = shared_control_plane.guard.enforce
    shared_control_plane.guard.enforce = True
    work = scratch / "node"
    work.mkdir()
    trap = Trap().start()
    ns = Namespace(work).start()
    real = RealNode(shared_control_plane, ns, binaries, trap, work)
    try:
        real.prepare_cloud()
        real.configure_ssm_agent()
        yield real
    finally:
        leftovers = ns.close()
        trap.stop()
        shared_control_plane.guard.enforce = enforced
        if leftovers:
            print(f"conformance: killed {len(leftovers)} leftover process(es) {leftovers}")


@pytest.fixture(scope="module")
def registered(node: RealNode) -> RealNode:
    if not node.instance_id:
        done = node.register()
        if done.returncode != 0 or not node.instance_id:
            pytest.fail("amazon-ssm-agent -register failed (exit "
                        f"{done.returncode}): {done.stderr.decode(errors='replace')[-800:]}",
                        pytrace=False)
    return node


@pytest.fixture(scope="module")
def ssm_running(registered: RealNode) -> RealNode:
    node = registered
    if not node.ns.running("amazon-ssm-agent"):
        node.start_ssm_agent()
        if not wait_for(lambda: node.role_credentials().get("aws_access_key_id")
                        or not node.ns.running("amazon-ssm-agent"), 120) \
                or not node.ns.running("amazon-ssm-agent"):
            pytest.fail("the SSM agent wrote no role credentials in 120 s; its log ends:\n"
                        + node.log_tail(SSM_LOG), pytrace=False)
    return node


@pytest.fixture(scope="module")
def ecs_running(ssm_running: RealNode) -> RealNode:
    node = ssm_running
    if node.binaries.ecs_agent is None:
        pytest.skip(f"no ECS `agent` binary in ${AGENTS_ENV}")
    if node.binaries.docker_dir is None:
        pytest.skip("the ECS agent needs a Docker engine: put dockerd (with containerd and "
                    f"runc) in ${AGENTS_ENV} or on PATH")
    if not node.ns.running("ecs-agent"):
        for port in (51678, 51679):
            if not port_free(port):
                pytest.fail(f"port {port} is taken: another ECS agent runs on this machine",
                            pytrace=False)
        if not node.ns.running("dockerd"):
            node.start_dockerd()
        node.start_ecs_agent()
        arn = wait_for(lambda: (node.introspection() or {}).get("ContainerInstanceArn")
                       or not node.ns.running("ecs-agent"), 120)
        if not isinstance(arn, str):
            exited = node.ns.processes["ecs-agent"].poll()
            pytest.fail("the ECS agent did not register in 120 s"
                        + (f" (it exited with {exited})" if exited is not None else "")
                        + "; its log ends:\n" + node.log_tail(ECS_LOG), pytrace=False)
    return node


@pytest.fixture(scope="module")
def window(ecs_running: RealNode) -> Window:
    """Watch the joined host for LAB_MINUTES of lab time.

    The real agents keep real time, so the lab clock must run at scale 1 here; the window is
    measured on the control plane's clock, which is the clock PingStatus and agentConnected
    are judged by.
    """
    node = ecs_running
    clock = node.plane.clock
    wait_first = node.registrar("wait", "--hosts", node.instance_id, "--cluster", CLUSTER,
                                "--timeout", "5m", "--interval", "5s", "--json")
    credentials = node.role_credentials()
    start = clock.now()
    samples: list[Sample] = []
    while True:
        at = clock.now() - start
        info = node.instance_info() or {}
        ci = node.container_instance() or {}
        fleet = node.registrar("fleet", "--cluster", CLUSTER, "--json", timeout=120)
        row = None
        if fleet.returncode == 0:
            rows = [h for h in json.loads(fleet.stdout).get("hosts", [])
                    if h.get("instance_id") == node.instance_id]
            row = rows[0] if rows else None
        samples.append(Sample(at, info.get("PingStatus"), ci.get("agentConnected"),
                              node.acs_up(), row, node.ns.running("amazon-ssm-agent"),
                              node.ns.running("ecs-agent")))
        if at >= LAB_MINUTES * 60:
            break
        time.sleep(max(0.0, min(SAMPLE_EVERY, LAB_MINUTES * 60 - (clock.now() - start))))
    wait_last = node.registrar("wait", "--hosts", node.instance_id, "--cluster", CLUSTER,
                               "--timeout", "60s", "--interval", "5s", "--json")
    return Window(LAB_MINUTES, wait_first, samples, wait_last, credentials)
