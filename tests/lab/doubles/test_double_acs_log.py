"""The ECS double writes the real agent's ACS session lines, and the supervisor reads them."""

from __future__ import annotations

import time
from pathlib import Path

from doubles_helpers import ECS, PYTHON, FakePlane, Processes, double_env, free_port, wait_until

from anywhere_agent.config import Config, SuperviseConfig
from anywhere_agent.health.model import Status
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.acs_session import AcsSessionProbe, parse
from anywhere_agent.supervise.clock import SystemClock

CREDS = "[default]\naws_access_key_id = AKIALABTEST\naws_secret_access_key = s3cr3t\n"


def test_refused_acs_dials_are_logged_as_the_real_agent_does_and_read_as_an_outage(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    (lab_root / "var/lib/ecs").mkdir(parents=True)
    (lab_root / "etc/ecs").mkdir(parents=True)
    (lab_root / "var/lib/ecs/ecs.config").write_text(
        f"AWS_DEFAULT_REGION=us-east-1\nECS_EXTERNAL=true\nECS_BACKEND_HOST={fake_plane.url}\n")
    (lab_root / "etc/ecs/ecs.config").write_text("ECS_CLUSTER=lab\n")
    (lab_root / "root/.aws").mkdir(parents=True)
    (lab_root / "root/.aws/credentials").write_text(CREDS)
    env = double_env(lab_root, ANYWHERE_LAB_ECS_INTROSPECTION_PORT=str(free_port()))
    processes.start([PYTHON, str(ECS), "start"], env, tmp_path / "ecs.out")
    log = lab_root / "var/log/ecs/ecs-agent.log"
    # The fake plane refuses every WebSocket upgrade (503 ServerException).
    wait_until(lambda: log.exists() and log.read_text().count("Waiting before reconnecting "
                                                              "to ACS") >= 2,
               timeout=20, what="two refused ACS dials")
    lines = log.read_text().splitlines()
    [start] = [ln for ln in lines if 'msg="Starting Amazon ECS Agent"' in ln]
    assert 'version="1.105.1"' in start and "module=" not in start
    failed = [ln for ln in lines if 'msg="Failed to connect to ACS"' in ln]
    assert failed and failed[0].startswith("level=error ")
    assert "containerInstanceARN=" in failed[0] and "ServerException" in failed[0]
    closed = [ln for ln in lines if 'msg="ACS WebSocket connection closed"' in ln]
    assert closed and closed[0].startswith("level=warn ")
    assert not any("Connected to ACS endpoint" in ln for ln in lines)
    assert not any(e.connected for e in parse(log.read_text()))

    cfg = Config(region="us-east-1", supervise=SuperviseConfig(acs_warn_seconds=1.0))
    probe = AcsSessionProbe(Host(lab_root), cfg, SystemClock(), 15.0,
                            fetch=lambda url, timeout: (200, b"{}"))
    time.sleep(1.5)
    [check] = probe().checks
    assert (check.status, check.reason) == (Status.WARNING, "endpoint"), check
    assert "ServerException" in check.summary
