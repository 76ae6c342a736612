"""registrar deregister: the central half of decommission, with the registrar's own policy."""

from __future__ import annotations

from anywhere_agent.errors import ExitCode


def _registered(clients):
    ssm = [i["InstanceId"] for i in clients.client("ssm").describe_instance_information()[
        "InstanceInformationList"]]
    ecs = clients.client("ecs")
    arns = ecs.list_container_instances(cluster="prod")["containerInstanceArns"]
    return ssm, arns


def test_deregister_removes_named_hosts_on_both_sides_and_a_rerun_finds_them_gone(
        cli, clients, lab):
    seeded = lab.admin.seed(3, cluster="prod")
    gone, kept = seeded.instance_ids[:2], seeded.instance_ids[2]
    result = cli("deregister", *gone, "--cluster", "prod", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["done"] == 4  # two container instances, two managed instances
    ssm, arns = _registered(clients)
    assert ssm == [kept]
    assert arns == [seeded.container_instance_arns[2]]
    again = cli("deregister", *gone, "--cluster", "prod", "--json")
    assert again.exit_code == 0, again.stderr
    assert (again.json()["done"], again.json()["already_gone"]) == (0, 2)


def test_deregister_refuses_a_host_that_still_runs_tasks(cli, clients, lab):
    seeded = lab.admin.seed(1, cluster="prod")
    lab.admin.set_running_tasks("prod", seeded.container_instance_arns[0], 2)
    result = cli("deregister", seeded.instance_ids[0])
    assert result.exit_code == ExitCode.REFUSED
    assert "drain first" in result.stderr
    assert _registered(clients)[0] == seeded.instance_ids


def test_deregister_takes_only_managed_instance_ids(cli, lab):
    result = cli("deregister", "i-0123456789abcdef0")
    assert result.exit_code == ExitCode.USAGE
    assert "mi- IDs" in result.stderr
