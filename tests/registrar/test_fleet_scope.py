"""registrar fleet across clusters and regions: exact cluster filters, side-by-side reads."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import timedelta

from anywhere_agent.cli.output import to_json
from anywhere_agent.errors import ExitCode
from anywhere_agent.registrar.fleet import Fleet, FleetRow

EU = "eu-west-1"


def test_fleet_of_an_empty_cluster_prints_an_empty_table_and_a_summary_and_exits_0(
        cli, clients, lab):
    lab.admin.seed(3, cluster="prod")
    lab.admin.seed(2, name_prefix="unjoined")  # in SSM only: in no cluster
    clients.client("ecs").create_cluster(clusterName="EMPTY")

    text = cli("fleet", "--cluster", "EMPTY")
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2, text.stdout
    assert lines[0].split()[:3] == ["name", "instance_id", "ping_status"]
    assert lines[1].startswith("0 hosts: 0 online, 0 active, 0 connected; 0 ssm_only")
    assert "5 more managed instances are in other clusters or none (not shown" in lines[1]

    doc = cli("fleet", "--cluster", "EMPTY", "--json").json()
    assert doc["hosts"] == [] and doc["clusters"] == ["EMPTY"]
    assert doc["summary"]["hosts"] == 0 and doc["outside_clusters"] == 5


def test_fleet_filtered_by_cluster_lists_only_that_clusters_hosts(cli, lab):
    prod = lab.admin.seed(3, cluster="prod", name_prefix="p")
    lab.admin.seed(2, cluster="test", name_prefix="t")
    lab.admin.seed(1, name_prefix="u")

    doc = cli("fleet", "--cluster", "prod", "--json").json()
    assert {h["instance_id"] for h in doc["hosts"]} == set(prod.instance_ids)
    assert {h["cluster"] for h in doc["hosts"]} == {"prod"}
    assert doc["outside_clusters"] == 3
    both = cli("fleet", "--cluster", "prod", "--cluster", "test", "--json").json()
    assert both["summary"]["hosts"] == 5 and both["summary"]["ssm_only"] == 0
    every = cli("fleet", "--all-clusters", "--json").json()
    assert every["summary"]["hosts"] == 6 and every["summary"]["ssm_only"] == 1
    assert every["outside_clusters"] == 0


def test_fleet_reads_every_region_and_cluster_at_the_pagination_minimum(cli, lab):
    # Two regions, three clusters, SSM-only hosts in one region; sizes off the page edges.
    east_a = lab.admin.seed(230, cluster="a", name_prefix="ea")
    east_b = lab.admin.seed(101, cluster="b", name_prefix="eb")
    west = lab.admin.seed(120, cluster="a", region=EU, name_prefix="wa")
    lonely = lab.admin.seed(7, region=EU, name_prefix="wu")
    lab.admin.reset_calls()

    result = cli("fleet", "--all-clusters", "--region", f"us-east-1,{EU}", "--json")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    assert doc["regions"] == ["us-east-1", EU]
    assert sorted(doc["clusters"]) == ["a", "b"]
    rows = {h["instance_id"]: h for h in doc["hosts"]}
    assert len(rows) == 458 and doc["summary"]["hosts"] == 458
    assert {(rows[i]["region"], rows[i]["cluster"]) for i in east_a.instance_ids} == {
        ("us-east-1", "a")}
    assert {(rows[i]["region"], rows[i]["cluster"]) for i in east_b.instance_ids} == {
        ("us-east-1", "b")}
    assert {(rows[i]["region"], rows[i]["cluster"]) for i in west.instance_ids} == {(EU, "a")}
    assert {rows[i]["flags"][0] for i in lonely.instance_ids} == {"ssm_only"}
    assert doc["summary"]["duplicate"] == 0  # same cluster name, two regions: two clusters

    calls = lab.admin.calls()
    assert calls.count("ssm", "DescribeInstanceInformation") == \
        math.ceil(331 / 50) + math.ceil(127 / 50)
    assert calls.count("ecs", "ListContainerInstances") == 3 + 2 + 2
    assert calls.count("ecs", "DescribeContainerInstances") == 3 + 2 + 2
    assert calls.count("ecs", "ListClusters") == 2
    assert calls.count("ssm") + calls.count("ecs") == 10 + 7 + 7 + 2  # nothing else


def test_fleet_repeated_region_option_equals_the_comma_list(cli, lab):
    lab.admin.seed(2, cluster="a")
    lab.admin.seed(3, cluster="a", region=EU, name_prefix="w")
    doc = cli("fleet", "--region", "us-east-1", "--region", EU, "--json").json()
    assert doc["summary"]["hosts"] == 5 and doc["regions"] == ["us-east-1", EU]


def test_fleet_named_cluster_may_be_missing_in_some_regions_but_not_all(cli, lab):
    lab.admin.seed(2, cluster="only-east")
    ok = cli("fleet", "--cluster", "only-east", "--region", f"us-east-1,{EU}", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert ok.json()["summary"]["hosts"] == 2
    missing = cli("fleet", "--cluster", "nowhere", "--region", f"us-east-1,{EU}")
    assert missing.exit_code == ExitCode.CLOUD
    assert missing.stderr.strip().count("\n") == 0
    assert f"ECS cluster nowhere not found (or inactive) in us-east-1, {EU}" in missing.stderr


def test_fleet_refuses_contradicting_or_malformed_scopes_with_usage_errors(cli, lab):
    both = cli("fleet", "--all-clusters", "--cluster", "prod")
    assert both.exit_code == ExitCode.USAGE
    assert "--all-clusters and --cluster contradict each other" in both.stderr
    bad = cli("fleet", "--region", "us-east-1,mars")
    assert bad.exit_code == ExitCode.USAGE and "--region mars is not a region" in bad.stderr
    assert lab.calls("ssm") + lab.calls("ecs") == 0


def test_streamed_json_is_the_same_document_as_the_whole_one():
    hosts = [FleetRow(f"mi-{i:017x}", name=f"h{i}", ping_status="Online", region="r",
                  flags=["ssm_only"]) for i in range(3)]
    for view in (Fleet(hosts, ["c"], timedelta(hours=1), ["r"], 2),
                 Fleet([], [], timedelta(minutes=5), ["r"])):
        streamed = "".join(view.json_chunks())
        assert streamed == to_json(view.to_dict())
        assert json.loads(streamed)["hosts"] == [h.to_dict() for h in view.hosts]


def test_bulk_reading_session_gives_the_same_fleet_as_botocores_own_parsing(clients, lab):
    from datetime import datetime

    from anywhere_agent.aws.clients import Clients
    from anywhere_agent.registrar import fleet

    lab.admin.seed(120, cluster="a")
    lab.seed_stale(3, "a", days=1)
    lab.admin.seed(4, region=EU, name_prefix="w")
    now = datetime.now().astimezone()
    views = [fleet.read({r: Clients(dataclasses.replace(clients.settings, region=r), session)
                         for r in ("us-east-1", EU)}, [], timedelta(hours=1), now).to_dict()
             for session in (None, fleet.reading_session())]
    for view in views:
        for h in view["hosts"]:
            h["last_ping"] = datetime.fromisoformat(h["last_ping"]).timestamp()
    assert views[0] == views[1]
    assert views[0]["summary"]["hosts"] == 127 and views[0]["summary"]["offline"] == 3
