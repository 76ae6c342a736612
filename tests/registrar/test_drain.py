"""registrar drain/undrain: DRAINING until tasks leave (bounded), ACTIVE again after."""

from __future__ import annotations

from anywhere_agent.errors import ExitCode


def statuses(clients, arns):
    resp = clients.client("ecs").describe_container_instances(cluster="prod",
                                                              containerInstances=arns)
    return {c["containerInstanceArn"]: (c["status"], c["runningTasksCount"])
            for c in resp["containerInstances"]}


def test_drain_waits_for_tasks_to_leave_then_undrain_restores_active(cli, clients, lab):
    seeded = lab.admin.seed(2, cluster="prod")
    arns = seeded.container_instance_arns
    lab.admin.set_running_tasks("prod", arns[0], 3, drain_delay_seconds=1.5)
    result = cli("drain", "--hosts", "seed-0,seed-1", "--cluster", "prod", "--timeout", "30s",
                 "--interval", "1s", "--json")
    assert result.exit_code == 0, result.stderr
    assert {h["running_tasks"] for h in result.json()["hosts"]} == {0}
    assert set(statuses(clients, arns).values()) == {("DRAINING", 0)}
    result = cli("undrain", "--hosts", f"seed-0,{seeded.instance_ids[1]}", "--cluster", "prod")
    assert result.exit_code == 0, result.stderr
    assert set(statuses(clients, arns).values()) == {("ACTIVE", 0)}


def test_drain_timeout_names_the_hosts_still_running_tasks(cli, lab):
    seeded = lab.admin.seed(1, cluster="prod")
    lab.admin.set_running_tasks("prod", seeded.container_instance_arns[0], 2,
                                drain_delay_seconds=600)
    result = cli("drain", "--hosts", "seed-0", "--cluster", "prod", "--timeout", "2s",
                 "--interval", "1s")
    assert result.exit_code == ExitCode.TIMEOUT
    assert "seed-0: 2 tasks" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_drain_of_an_unknown_host_changes_nothing(cli, clients, lab):
    seeded = lab.admin.seed(1, cluster="prod")
    result = cli("drain", "--hosts", "seed-0,ghost", "--cluster", "prod")
    assert result.exit_code == ExitCode.USAGE and "ghost" in result.stderr
    assert statuses(clients, seeded.container_instance_arns) == {
        seeded.container_instance_arns[0]: ("ACTIVE", 0)}
