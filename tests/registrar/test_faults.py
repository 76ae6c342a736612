"""Every registrar command completes correctly, within its bound, with 30% throttling or 5xx."""

from __future__ import annotations

import json
import time

import pytest

from anywhere_agent.lab.control_plane.faults import FaultRule

# Whole-scenario bound. botocore backs off ~1 s per throttled retry (50 ms for a 5xx) and
# adaptive mode also slows the client, so 30% throttling costs tens of seconds here, where
# the lab throttles at random rather than by rate; every call is capped at 8 attempts.
BOUND_S = 120
COMMAND_BOUND_S = 40


@pytest.mark.parametrize("kind", ["throttle", "5xx"])
def test_every_command_completes_correctly_with_30_percent_faults(cli, clients, lab, tmp_path,
                                                                  kind):
    healthy = lab.admin.seed(300, cluster="prod")
    stale = lab.seed_stale(2, "prod", days=8)
    lab.admin.set_faults([FaultRule(kind=kind, rate=0.3, status=503 if kind == "5xx" else 500)],
                         seed=7)
    started = time.monotonic()
    timings: dict[str, float] = {}

    def timed(*args: str):
        t0 = time.monotonic()
        result = cli(*args)
        timings[args[0]] = max(timings.get(args[0], 0.0), time.monotonic() - t0)
        return result

    ensured = timed("ensure", "--cluster", "prod", "--json")
    assert ensured.exit_code == 0, ensured.stderr
    assert ensured.json()["role"]["changes"][0] == "created role trusting ssm.amazonaws.com"
    assert timed("ensure", "--cluster", "prod", "--json").json()["changed"] is False

    out = tmp_path / "codes.json"
    activated = timed("activate", "--count", "2500", "--yes", "--output", str(out),
                      "--rollout", "r-f")
    assert activated.exit_code == 0, activated.stderr
    assert [a["registration_limit"] for a in json.loads(out.read_text())["activations"]] == [
        1000, 1000, 500]

    fleet = timed("fleet", "--cluster", "prod", "--json")
    assert fleet.exit_code == 0, fleet.stderr
    assert fleet.json()["summary"]["hosts"] == 302
    assert fleet.json()["summary"]["offline"] == 2

    pruned = timed("prune", "--yes", "--json", "--cluster", "prod")
    assert pruned.exit_code == 0, pruned.stderr
    assert pruned.json()["done"] + pruned.json()["already_gone"] == 4

    waited = timed("wait", "--hosts", ",".join(healthy.instance_ids[:20]), "--cluster", "prod",
                 "--timeout", "60s", "--interval", "1s")
    assert waited.exit_code == 0, waited.stderr

    revoked = timed("revoke", "--rollout", "r-f", "--json")
    assert revoked.exit_code == 0, revoked.stderr
    assert len(revoked.json()["deleted"]) + len(revoked.json()["not_found"]) == 3

    elapsed = time.monotonic() - started
    lab.admin.clear_faults()
    assert elapsed < BOUND_S, f"took {elapsed:.1f}s"
    assert max(timings.values()) < COMMAND_BOUND_S, timings
    faulted = lab.admin.calls().faulted
    assert sum(sum(ops.values()) for ops in faulted.values()) >= 10  # faults did happen
    assert {i["InstanceId"] for p in clients.client("ssm").get_paginator(
        "describe_instance_information").paginate() for i in p["InstanceInformationList"]
    } == set(healthy.instance_ids)
    assert not set(stale.instance_ids) & {h["instance_id"] for h in cli(
        "fleet", "--json").json()["hosts"]}
