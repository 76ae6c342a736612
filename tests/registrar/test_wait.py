"""registrar wait: a gate that returns when hosts are Online, ACTIVE and connected, or says why."""

from __future__ import annotations

import threading
import time

from anywhere_agent.errors import ExitCode


def test_wait_returns_at_once_for_ready_hosts_named_by_name_or_mi_id(cli, lab):
    seeded = lab.admin.seed(3, cluster="prod")
    result = cli("wait", "--hosts", f"seed-0,seed-1,{seeded.instance_ids[2]}",
                 "--timeout", "30s", "--cluster", "prod", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["ready"] is True
    assert [h["reason"] for h in doc["hosts"]] == ["ready"] * 3
    assert doc["hosts"][0]["instance_id"] == seeded.instance_ids[0]


def test_wait_returns_once_the_hosts_join_while_it_polls(cli, clients, lab):
    def join_later() -> None:
        time.sleep(1.0)
        lab.admin.seed(2, cluster="prod")

    clients.client("ecs").create_cluster(clusterName="prod")
    joiner = threading.Thread(target=join_later)
    joiner.start()
    started = time.monotonic()
    result = cli("wait", "--hosts", "seed-0,seed-1", "--cluster", "prod", "--timeout", "30s",
                 "--interval", "1s")
    joiner.join()
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "2 hosts ready: seed-0, seed-1"
    assert 0.9 < time.monotonic() - started < 15


def test_wait_timeout_lists_each_host_not_there_and_why(cli, lab):
    lab.admin.seed(1, cluster="prod")  # seed-0: ready
    lab.admin.seed(2)  # seed-0 (duplicate, ready via the first) and seed-1: not in the cluster
    lost = lab.seed_stale(1, "prod", days=1)  # seed-0 again; ConnectionLost
    unplugged = lab.admin.seed(1, cluster="prod", agent_connected=False)  # seed-0 again
    started = time.monotonic()
    result = cli("wait", "--hosts", f"seed-1,ghost,{lost.instance_ids[0]},"
                 f"{unplugged.instance_ids[0]},seed-0", "--timeout", "2s", "--interval", "1s",
                 "--cluster", "prod")
    elapsed = time.monotonic() - started
    assert result.exit_code == ExitCode.TIMEOUT
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    line = lines[0]
    assert "4 of 5 hosts not ready after 2s" in line
    assert "seed-1: not in the cluster" in line
    assert "ghost: not in SSM" in line
    assert f"{lost.instance_ids[0]}: SSM ping ConnectionLost" in line
    assert f"{unplugged.instance_ids[0]}: ECS agentConnected false" in line
    assert "seed-0:" not in line  # ready through its one good registration
    assert elapsed < 10


def test_wait_on_an_unknown_cluster_fails_fast_with_exit_6(cli, lab):
    started = time.monotonic()
    result = cli("wait", "--hosts", "a", "--cluster", "nope", "--timeout", "1m")
    assert result.exit_code == ExitCode.CLOUD
    assert time.monotonic() - started < 10
    assert len(result.stderr.strip().splitlines()) == 1


def test_wait_with_empty_hosts_or_a_bad_timeout_is_a_usage_error(cli, lab):
    assert cli("wait", "--hosts", " , ").exit_code == ExitCode.USAGE
    assert cli("wait", "--hosts", "a", "--timeout", "0s").exit_code == ExitCode.USAGE
    assert cli("wait", "--hosts", "a", "--timeout", "ten").exit_code == ExitCode.USAGE
    assert lab.admin.calls().calls == {}
