"""registrar prune: stale and duplicate identities on both sides, expired activations, safely."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from anywhere_agent.errors import ExitCode, PartialFailure
from anywhere_agent.registrar import prune
from anywhere_agent.registrar.activations import describe_all
from anywhere_agent.registrar.fleet import FleetRow


def _ssm_ids(clients):
    pages = clients.client("ssm").get_paginator("describe_instance_information").paginate()
    return {i["InstanceId"] for p in pages for i in p["InstanceInformationList"]}


def _ci_arns(clients, cluster="prod"):
    return set(clients.client("ecs").list_container_instances(cluster=cluster)[
        "containerInstanceArns"])


def test_prune_without_yes_on_a_non_tty_is_a_dry_run_that_changes_nothing(cli, clients, lab):
    lab.admin.seed(2, cluster="prod")
    stale = lab.seed_stale(2, "prod", days=8)
    result = cli("prune", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["dry_run"] is True
    assert sorted(a["target"] for a in doc["actions"]) == sorted(
        stale.instance_ids + stale.container_instance_arns)
    assert lab.writes() == {}
    assert len(_ssm_ids(clients)) == 4

    text = cli("prune")
    assert "dry run: 4 actions planned, nothing changed" in text.stdout


def test_prune_yes_deregisters_week_old_hosts_on_both_sides_and_a_rerun_does_nothing(
        cli, clients, lab):
    keep = lab.admin.seed(2, cluster="prod")
    recent = lab.seed_stale(1, "prod", days=2)  # offline, but not for a week yet
    stale = lab.seed_stale(2, "prod", days=8)
    result = cli("prune", "--yes", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json()["done"] == 4
    assert _ssm_ids(clients) == set(keep.instance_ids + recent.instance_ids)
    assert _ci_arns(clients) == set(keep.container_instance_arns
                                    + recent.container_instance_arns)
    assert not set(stale.instance_ids) & _ssm_ids(clients)

    again = cli("prune", "--yes", "--json")
    assert again.exit_code == 0
    assert again.json()["actions"] == [] and again.json()["done"] == 0
    shorter = cli("prune", "--yes", "--json", "--offline-for", "1d")
    assert shorter.json()["done"] == 2  # the two-day-old host, both sides


def test_prune_skips_a_stale_host_with_running_tasks_unless_forced(cli, clients, lab):
    stale = lab.seed_stale(1, "prod", days=8)
    lab.admin.set_running_tasks("prod", stale.container_instance_arns[0], 3)
    result = cli("prune", "--yes", "--json")
    assert result.exit_code == 0
    doc = result.json()
    assert doc["actions"] == []
    [skipped] = doc["skipped"]
    assert "has 3 running tasks" in skipped["reason"]
    assert _ssm_ids(clients) == set(stale.instance_ids)

    forced = cli("prune", "--yes", "--force", "--json")
    assert forced.json()["done"] == 2
    assert _ssm_ids(clients) == set() and _ci_arns(clients) == set()


def test_prune_duplicates_keeps_the_online_registration_of_each_computer(cli, clients, lab):
    online = lab.admin.seed(1, cluster="prod")  # computer seed-0
    older = lab.admin.seed(1, cluster="prod", online=False, agent_connected=False)  # seed-0
    assert cli("prune", "--yes", "--json").json()["done"] == 0  # only minutes offline
    result = cli("prune", "--yes", "--duplicates", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert {a["reason"] for a in doc["actions"]} == {f"duplicate of {online.instance_ids[0]}"}
    assert _ssm_ids(clients) == set(online.instance_ids)
    assert _ci_arns(clients) == set(online.container_instance_arns)
    assert older.instance_ids[0] not in _ssm_ids(clients)
    assert cli("prune", "--yes", "--duplicates", "--json").json()["actions"] == []


def test_prune_removes_ecs_only_instances_whose_agent_is_gone(cli, clients, lab):
    orphan = lab.admin.seed(1, cluster="prod", agent_connected=False)
    clients.client("ssm").deregister_managed_instance(InstanceId=orphan.instance_ids[0])
    result = cli("prune", "--yes", "--json")
    assert [a["kind"] for a in result.json()["actions"]] == ["deregister_container_instance"]
    assert _ci_arns(clients) == set()


def test_prune_deletes_expired_activations_only(cli, clients, lab, tmp_path):
    assert cli("ensure").exit_code == 0
    out = tmp_path / "c.json"
    cli("activate", "--count", "2", "--output", str(out))
    cli("activate", "--count", "2", "--output", str(tmp_path / "live.json"))
    expired = json.loads(out.read_text())["activations"][0]["activation_id"]
    lab.admin.expire_activation(expired)
    result = cli("prune", "--yes", "--json")
    assert [(a["kind"], a["target"]) for a in result.json()["actions"]] == [
        ("delete_activation", expired)]
    assert [a["ActivationId"] for a in describe_all(clients)] != [expired]
    assert len(describe_all(clients)) == 1


def test_prune_on_a_tty_asks_before_changing_anything(cli, clients, lab, monkeypatch):
    stale = lab.seed_stale(1, "prod", days=8)
    monkeypatch.setattr("anywhere_agent.cli.registrar.is_tty", lambda stream=None: True)
    refused = cli("prune", stdin="n\n")
    assert refused.exit_code == ExitCode.REFUSED
    assert _ssm_ids(clients) == set(stale.instance_ids)
    accepted = cli("prune", stdin="y\n")
    assert accepted.exit_code == 0, accepted.stderr
    assert "pruned: 2 done" in accepted.stdout
    assert _ssm_ids(clients) == set()


def test_prune_dry_run_and_yes_together_is_a_usage_error(cli, lab):
    result = cli("prune", "--dry-run", "--yes")
    assert result.exit_code == ExitCode.USAGE
    assert lab.admin.calls().calls == {}


def test_prune_collects_per_item_failures_into_one_partial_failure(clients, lab):
    stale = lab.seed_stale(2, "prod", days=8)
    plan = prune.make_plan(clients, ["prod"])
    # Another operator removed one SSM identity meanwhile (already gone: not a failure);
    # a bogus action stands in for an item AWS refuses.
    clients.client("ssm").deregister_managed_instance(InstanceId=stale.instance_ids[0])
    bogus = prune.Action("deregister_container_instance", "arn:aws:ecs:us-east-1:"
                         "123456789012:container-instance/prod/nope", "x", "test",
                         cluster="prod", force=True)
    plan.actions.append(bogus)
    with pytest.raises(PartialFailure) as caught:
        prune.apply(clients, plan, dry_run=False)
    assert caught.value.exit_code == ExitCode.PARTIAL
    assert len(caught.value.errors) == 1 and "nope" in caught.value.errors[0]
    assert _ssm_ids(clients) == set()


def test_plan_is_pure_and_keeps_the_most_recent_duplicate():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    a = FleetRow("mi-a", name="h", computer_name="h", ping_status="ConnectionLost",
             last_ping=now - timedelta(hours=2), ping_age_s=7200)
    b = FleetRow("mi-b", name="h", computer_name="H", ping_status="ConnectionLost",
             last_ping=now - timedelta(hours=1), ping_age_s=3600)
    plan = prune.plan([a, b], [], timedelta(days=7), duplicates=True, force=False)
    assert [(x.kind, x.target) for x in plan.actions] == [
        ("deregister_managed_instance", "mi-a")]
