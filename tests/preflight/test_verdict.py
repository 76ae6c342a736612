"""Preflight's verdicts and health's statuses are different vocabularies with different names."""

from __future__ import annotations

from anywhere_agent.health import model as health
from anywhere_agent.preflight import model as preflight


def test_the_worst_verdict_is_fail_then_warn_then_pass_then_skip() -> None:
    assert preflight.worst_verdict(["skip", "pass", "warn"]) == "warn"
    assert preflight.worst_verdict(["warn", "fail"]) == "fail"
    assert preflight.worst_verdict(["skip"]) == "skip"


def test_no_name_means_one_thing_in_preflight_and_another_in_health() -> None:
    shared = {n for n in vars(preflight) if not n.startswith("_")} & \
        {n for n in vars(health) if not n.startswith("_")}
    imported = {"annotations", "dataclass", "Literal", "Any", "Optional", "field", "replace",
                "json", "Iterable", "Mapping", "Sequence", "IntEnum"}
    assert shared - imported == set()
