"""prune --cluster is exact, and deregister's partial failure names deregister, not prune."""

from __future__ import annotations

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab.control_plane.faults import FaultRule


def _ssm_ids(clients):
    pages = clients.client("ssm").get_paginator("describe_instance_information").paginate()
    return {i["InstanceId"] for p in pages for i in p["InstanceInformationList"]}


def test_prune_with_a_cluster_leaves_other_clusters_and_unclustered_hosts_alone(
        cli, clients, lab):
    mine = lab.seed_stale(1, "prod", days=8)
    theirs = lab.seed_stale(1, "staging", days=8)
    nowhere = lab.seed_stale(1, None, days=8)  # registered in SSM, never joined a cluster
    result = cli("prune", "--cluster", "prod", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert sorted(a["target"] for a in doc["actions"]) == sorted(
        mine.instance_ids + mine.container_instance_arns)
    assert doc["outside_clusters"] == 2
    # staging's host keeps both halves: its container instance is not orphaned.
    assert _ssm_ids(clients) == set(theirs.instance_ids + nowhere.instance_ids)
    assert clients.client("ecs").list_container_instances(cluster="staging")[
        "containerInstanceArns"] == theirs.container_instance_arns

    shown = cli("prune", "--cluster", "staging", "--dry-run")
    assert "not considered: 1 managed instances with no container instance in --cluster" \
        in shown.stdout
    everything = cli("prune", "--yes", "--json")  # no --cluster: every cluster, and none
    assert everything.json()["done"] == 3 and _ssm_ids(clients) == set()


def test_a_deregister_that_partly_fails_names_deregister_and_its_rerun(
        cli, clients, lab, monkeypatch):
    seeded = lab.admin.seed(1, cluster="prod")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    lab.admin.set_faults([FaultRule(kind="5xx", service="ssm",
                                    operation="DeregisterManagedInstance")])
    try:
        result = cli("deregister", *seeded.instance_ids, "--cluster", "prod", "--force")
    finally:
        lab.admin.clear_faults()
    assert result.exit_code == ExitCode.PARTIAL, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: deregister: 1 of 2 actions failed")
    assert f"run `anywhere-agent registrar deregister {seeded.instance_ids[0]}` again" in first
    assert "prune" not in result.stderr
