"""The ACS session probe: the real agent's log lines, thresholds, the fix it names, rotation."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from anywhere_agent.config import Config, Proxy, SuperviseConfig, load_config
from anywhere_agent.errors import ConfigError
from anywhere_agent.health.model import Status
from anywhere_agent.host.gateway import Host
from anywhere_agent.supervise.acs_session import (
    CHECK,
    ECS_AGENT_LOG,
    READ_LIMIT,
    AcsSessionProbe,
    parse,
)
from anywhere_agent.supervise.probes import default_probes

from .conftest import FakeClock

ARN = "arn:aws:ecs:us-east-1:123456789012:container-instance/lab/0123456789abcdef"
DNS_ERROR = ('websocket client: unable to dial ecs-a-1.us-east-1.amazonaws.com response: : '
             'dial tcp: lookup ecs-a-1.us-east-1.amazonaws.com: no such host')


def stamp(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Lines as the real agent writes them: ecs-agent/logger logfmtFormatter + messageTextFormatter
# for structured messages (no module=), fields in Go map order.
def connected(at: float) -> str:
    return (f'level=info time={stamp(at)} msg="Connected to ACS endpoint" '
            f'containerInstanceARN="{ARN}" lastConnectedTime=2026-11-30 05:00:00.1 +0000 UTC '
            'm=+3.2\n')


def failed(at: float, error: str = DNS_ERROR) -> str:
    return (f'level=error time={stamp(at)} msg="Failed to connect to ACS" '
            f'containerInstanceARN="{ARN}" error={json.dumps(error)}\n'
            f'level=warn time={stamp(at)} msg="ACS WebSocket connection closed" '
            f'error={json.dumps(error)} containerInstanceARN="{ARN}"\n'
            f'level=info time={stamp(at)} msg="Waiting before reconnecting to ACS" '
            f'reconnectDelay="1.2s" containerInstanceARN="{ARN}"\n')


def periodic(at: float) -> str:
    return (f'level=info time={stamp(at)} msg="Current ACS session is done and a new one might '
            f'be created." containerInstanceARN="{ARN}"\n'
            f'level=info time={stamp(at)} msg="ACS WebSocket connection closed for a valid '
            f'reason" containerInstanceARN="{ARN}"\n'
            f'level=info time={stamp(at)} msg="Reconnecting to ACS immediately without waiting" '
            f'containerInstanceARN="{ARN}"\n')


class Agent:
    """The ECS agent as the probe sees it: its log file and whether introspection answers."""

    def __init__(self, root: Path, clock: FakeClock) -> None:
        self.root, self.clock, self.answers = root, clock, True
        self.log = root / ECS_AGENT_LOG.lstrip("/")
        self.log.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> None:
        with self.log.open("a", encoding="utf-8") as fh:
            fh.write(text)
            fh.write('level=info time=2026-11-30T05:00:00Z msg="Polling for task" module=a.go\n')

    def fetch(self, url: str, timeout: float) -> tuple[int, bytes]:
        if not self.answers:
            raise ConnectionRefusedError("refused")
        return 200, json.dumps({"Cluster": "lab", "ContainerInstanceArn": ARN}).encode()


def probe_for(tmp_path: Path, **supervise: float) -> tuple[AcsSessionProbe, Agent, FakeClock]:
    clock = FakeClock()
    cfg = Config(region="us-east-1", supervise=SuperviseConfig(**supervise))  # type: ignore[arg-type]
    agent = Agent(tmp_path, clock)
    return AcsSessionProbe(Host(tmp_path), cfg, clock, 15.0, fetch=agent.fetch), agent, clock


def one(probe: AcsSessionProbe) -> tuple[Status, str, str, str]:
    [check] = probe().checks
    assert check.name == CHECK
    return check.status, check.reason, check.summary, check.fix


def test_the_real_agents_lines_in_logfmt_and_json_are_read_as_up_and_down() -> None:
    t = 1_800_000_000.0
    text = (connected(t) + periodic(t + 1) + connected(t + 2) + failed(t + 3)
            + json.dumps({"level": "info", "time": stamp(t + 4), "msg": "Connected to ACS "
                          "endpoint", "containerInstanceARN": ARN}) + "\n"
            + f'level=info time={stamp(t + 5)} msg="Connected to TCS endpoint" module=h.go\n')
    events = parse(text)
    assert [(e.at - t, e.connected) for e in events] == [
        (0, True), (1, False), (1, False), (2, True), (3, False), (3, False), (4, True)]
    assert events[4].error == DNS_ERROR


def test_connected_is_ok_and_a_periodic_reconnect_stays_ok(tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path)
    agent.write(connected(clock.wall))
    clock.advance(600)
    assert one(probe)[:2] == (Status.OK, "connected")
    agent.write(periodic(clock.wall))
    clock.advance(1)
    assert one(probe)[:2] == (Status.OK, "reconnecting")
    agent.write(connected(clock.wall))
    assert one(probe)[:2] == (Status.OK, "connected")


def test_an_outage_turns_warning_then_critical_then_ok_when_it_reconnects(
        tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path, acs_warn_seconds=300, acs_crit_seconds=900)
    agent.write(connected(clock.wall))
    assert one(probe)[0] is Status.OK
    agent.write(failed(clock.wall))
    clock.advance(299)
    assert one(probe)[:2] == (Status.OK, "reconnecting")
    clock.advance(2)
    agent.write(failed(clock.wall))  # the agent keeps re-dialling: the outage began earlier
    status, reason, summary, fix = one(probe)
    assert (status, reason) == (Status.WARNING, "endpoint")
    assert "5 min" in summary and "no such host" in summary
    assert "ecs-a-*.us-east-1.amazonaws.com:443" in fix and "preflight" in fix
    clock.advance(600)
    assert one(probe)[:2] == (Status.CRITICAL, "endpoint")
    agent.write(connected(clock.wall))
    assert one(probe)[:2] == (Status.OK, "connected")


@pytest.mark.parametrize("error,reason,words", [
    ("NoCredentialProviders: no valid providers in chain", "credentials", "/root/.aws/credentials"),
    ("websocket: bad handshake: ExpiredTokenException: the security token expired",
     "credentials", "amazon-ssm-agent"),
    ("proxyconnect tcp: dial tcp 10.0.0.9:3128: connect: connection refused", "proxy",
     "http://u:***@proxy:3128"),
    ("dial tcp 52.1.2.3:443: i/o timeout", "endpoint", "and the proxy"),
])
def test_the_fix_follows_the_agents_last_error(tmp_path: Path, error: str, reason: str,
                                               words: str) -> None:
    clock = FakeClock()
    cfg = Config(region="us-east-1", supervise=SuperviseConfig(acs_warn_seconds=60),
                 proxy=Proxy(https="http://u:pw123456@proxy:3128"))
    agent = Agent(tmp_path, clock)
    probe = AcsSessionProbe(Host(tmp_path), cfg, clock, 15.0, fetch=agent.fetch)
    agent.write(failed(clock.wall, error))
    clock.advance(61)
    status, got, summary, fix = one(probe)
    assert (status, got) == (Status.WARNING, reason)
    assert words in fix
    assert "pw123456" not in summary + fix


def test_a_deregistered_instance_is_named_as_such_not_as_a_network_fault(
        tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path, acs_warn_seconds=60)
    agent.write(failed(clock.wall - 3600))  # an old outage's error must not carry over
    agent.write(connected(clock.wall - 1800))
    agent.write(f'level=info time={stamp(clock.wall)} msg="Current ACS session is done and a new '
                f'one might be created." containerInstanceARN="{ARN}"\n'
                f'level=info time={stamp(clock.wall)} msg="Container instance is deregistered" '
                f'containerInstanceARN="{ARN}"\n')
    clock.advance(120)
    status, reason, summary, fix = one(probe)
    assert (status, reason) == (Status.WARNING, "deregistered")
    assert "re-install" in fix and "no such host" not in summary


def test_an_agent_that_never_connected_since_it_started_is_down_from_its_start(
        tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path, acs_warn_seconds=60)
    agent.write(connected(clock.wall - 3600))
    agent.write(f'level=info time={stamp(clock.wall)} msg="Starting Amazon ECS Agent" '
                'version="1.105.1" commit="a8b3e7d3"\n')
    clock.advance(90)
    status, reason, _, fix = one(probe)
    assert (status, reason) == (Status.WARNING, "disconnected")
    assert "endpoint" in fix and "proxy" in fix and "credentials" in fix


def test_a_silent_or_stopped_agent_is_left_to_the_other_checks(tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path)
    [check] = probe().checks
    assert (check.status, check.reason, check.skipped) == (Status.UNKNOWN, "no_record", True)
    agent.write(failed(clock.wall - 3600))
    agent.answers = False
    [check] = probe().checks
    assert (check.reason, check.skipped) == ("agent_down", True)


def test_below_info_level_the_check_says_it_cannot_tell(tmp_path: Path) -> None:
    clock = FakeClock()
    probe = AcsSessionProbe(Host(tmp_path), Config(ecs_loglevel="warn"), clock, 15.0,
                            fetch=Agent(tmp_path, clock).fetch)
    [check] = probe().checks
    assert (check.reason, check.skipped) == ("log_level", True)
    assert 'ecs_loglevel = "info"' in check.fix


def test_hourly_rotation_keeps_the_session_and_the_lines_written_before_it(
        tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path, acs_warn_seconds=60)
    agent.write(connected(clock.wall))
    assert one(probe)[1] == "connected"
    agent.write(failed(clock.wall))  # written after the last probe, before the rotation
    os.rename(agent.log, str(agent.log) + ".2026-11-30-05")
    agent.write('level=info time=2026-11-30T06:00:00Z msg="Managed task" module=a.go\n')
    clock.advance(120)
    assert one(probe)[:2] == (Status.WARNING, "endpoint")
    # A fresh probe (supervisor restart) finds the session in the rotated file too.
    fresh = AcsSessionProbe(Host(tmp_path), probe._cfg, clock, 15.0, fetch=agent.fetch)
    assert one(fresh)[:2] == (Status.WARNING, "endpoint")


def test_a_half_written_last_line_is_read_once_it_is_whole(tmp_path: Path) -> None:
    probe, agent, clock = probe_for(tmp_path, acs_warn_seconds=60)
    agent.write(failed(clock.wall - 120))
    line = connected(clock.wall)
    with agent.log.open("a") as fh:
        fh.write(line[:30])
    assert one(probe)[0] is Status.WARNING
    with agent.log.open("a") as fh:
        fh.write(line[30:])
    assert one(probe)[:2] == (Status.OK, "connected")


def test_the_supervisor_runs_the_probe_and_the_thresholds_are_config_keys(
        tmp_path: Path) -> None:
    (tmp_path / "agent.toml").write_text(
        'region = "us-east-1"\n[supervise]\nacs_warn_seconds = 10\nacs_crit_seconds = 20\n')
    cfg = load_config(tmp_path, {}, {}, "/agent.toml")
    assert (cfg.supervise.acs_warn_seconds, cfg.supervise.acs_crit_seconds) == (10, 20)
    names = [p.name for p in default_probes(cfg, Host(tmp_path), FakeClock())]
    assert CHECK in names
    (tmp_path / "agent.toml").write_text('[supervise]\nacs_warn_seconds = 30\n'
                                         'acs_crit_seconds = 20\n')
    with pytest.raises(ConfigError, match="acs_crit_seconds"):
        load_config(tmp_path, {}, {}, "/agent.toml")


class CountingHost(Host):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.read = 0

    def read_tail(self, node_path: str, max_bytes: int, start: int = 0):  # type: ignore[no-untyped-def]
        tail = super().read_tail(node_path, max_bytes, start)
        self.read += len(tail.data) if tail else 0
        return tail


def test_each_probe_reads_only_what_the_log_gained(tmp_path: Path) -> None:
    clock = FakeClock()
    agent = Agent(tmp_path, clock)
    host = CountingHost(tmp_path)
    probe = AcsSessionProbe(host, Config(), clock, 15.0, fetch=agent.fetch)
    agent.write('level=info time=2026-11-30T05:00:00Z msg="Managed task" module=a.go\n' * 20000
                + connected(clock.wall))
    assert one(probe)[1] == "connected"
    assert host.read == min(agent.log.stat().st_size, READ_LIMIT)  # a tail, never the whole
    host.read = 0
    before = agent.log.stat().st_size
    agent.write(failed(clock.wall))
    one(probe)
    assert host.read == agent.log.stat().st_size - before


def test_health_help_names_the_acs_check_and_its_thresholds() -> None:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "anywhere_agent", "health", "--help"],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    assert "ACS session" in out and "acs_warn_seconds" in out and "acs_crit_seconds" in out
