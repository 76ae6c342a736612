"""Input parsing and activation sizing, checked without any AWS call."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from anywhere_agent.errors import UsageError
from anywhere_agent.registrar.activations import Activation, split_count
from anywhere_agent.registrar.inputs import parse_duration, parse_expiry, parse_hosts, parse_tags
from anywhere_agent.secret import Secret


@pytest.mark.parametrize(("count", "limits"), [
    (1, [1]), (999, [999]), (1000, [1000]), (1001, [1000, 1]), (5000, [1000] * 5),
])
def test_split_count_covers_the_count_with_at_most_1000_per_activation(count, limits):
    assert split_count(count) == limits


def test_durations_accept_the_usual_units_and_30_days_is_the_expiry_ceiling():
    assert parse_duration("90s", "--x") == timedelta(seconds=90)
    assert parse_duration("10m", "--x") == timedelta(minutes=10)
    assert parse_duration("7d", "--x") == timedelta(days=7)
    assert parse_expiry("30d") == timedelta(days=30)
    with pytest.raises(UsageError):
        parse_expiry("721h")


def test_tags_and_hosts_parse_and_deduplicate():
    assert parse_tags(["team=platform", "env = prod", "empty="]) == {
        "team": "platform", "env": "prod", "empty": ""}
    assert parse_hosts("a, b,a,,mi-0123") == ["a", "b", "mi-0123"]


def test_an_activation_never_shows_its_code_unless_asked():
    a = Activation("id-1", Secret("CODE-1234567890"), 5,
                   datetime(2025, 1, 1, tzinfo=timezone.utc), "r", "role")
    assert "CODE-1234567890" not in repr(a) + str(a) + str(a.to_dict())
    assert a.to_dict(reveal=True)["activation_code"] == "CODE-1234567890"
