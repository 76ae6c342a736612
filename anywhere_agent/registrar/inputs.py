"""Parse and check the registrar's user inputs (durations, tags, counts) before any AWS call."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import timedelta
from types import MappingProxyType

from anywhere_agent.errors import RefusedError, UsageError

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw]?)\s*$")
_UNITS = MappingProxyType({"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "": 1})
# SSM/ECS tag rules: key 1..128, value 0..256, letters, digits, spaces and _ . : / = + - @
_TAG_CHARS = re.compile(r"^[\w .:/=+\-@]*$", re.UNICODE)
MAX_ACTIVATION_LIFETIME = timedelta(days=30)
# SSM's standard tier holds 1,000 on-premises managed nodes per account and region; more needs
# the (paid) advanced-instances tier, so a larger count is more often a typo than a plan.
STANDARD_TIER_NODES = 1000
MAX_TAGS = 50  # per AWS resource, SSM activations included


def parse_duration(text: str, flag: str) -> timedelta:
    """`90s`, `10m`, `2h`, `7d`, `1w` (bare digits are seconds); zero and negatives are refused."""
    m = _DURATION.match(text)
    if not m:
        raise UsageError(f"{flag} {text!r} is not a duration",
                         "write it as a number and a unit: 90s, 10m, 2h, 7d, 1w")
    value = timedelta(seconds=int(m.group(1)) * _UNITS[m.group(2)])
    if value <= timedelta(0):
        raise UsageError(f"{flag} {text!r} must be longer than zero", "give a positive duration")
    return value


def parse_expiry(text: str) -> timedelta:
    value = parse_duration(text, "--expires")
    if value > MAX_ACTIVATION_LIFETIME:
        raise UsageError(f"--expires {text!r} is longer than the 30 days SSM allows",
                         "use at most 30d (shorter is safer: a leaked code works until expiry)")
    return value


def parse_count(count: int, yes: bool = False) -> int:
    """At least 1; past the standard tier's node quota only when the operator confirms."""
    if count < 1:
        raise UsageError(f"--count {count} must be at least 1",
                         "give the number of hosts the rollout will register")
    if count > STANDARD_TIER_NODES and not yes:
        raise RefusedError(
            f"--count {count:,} is more than the {STANDARD_TIER_NODES:,} on-premises managed "
            "nodes SSM's standard tier allows per account and region",
            "check the count; if it is right and the account uses the advanced-instances "
            "tier, pass --yes")
    return count


def parse_tags(items: Iterable[str], ours: int = 0) -> dict[str, str]:
    """`k=v` pairs as SSM accepts them; `aws:` keys are reserved by AWS and refused.

    `ours` is how many tags the caller adds itself: AWS's 50-tag limit counts them too.
    """
    tags: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key, value = key.strip(), value.strip()
        problem = ""
        if not sep or not key:
            problem = "is not key=value"
        elif len(key) > 128 or len(value) > 256:
            problem = "is too long (key <= 128, value <= 256 characters)"
        elif not _TAG_CHARS.match(key) or not _TAG_CHARS.match(value):
            problem = "has characters SSM refuses"
        elif key.lower().startswith("aws:") or key.startswith("anywhere-agent:"):
            problem = "uses a reserved key prefix (aws:, anywhere-agent:)"
        if problem:
            raise UsageError(f"--tag {item!r} {problem}",
                             "write tags as key=value with letters, digits, spaces and _.:/=+-@")
        tags[key] = value
    if len(tags) + ours > MAX_TAGS:
        raise UsageError(f"{len(tags)} --tag options and anywhere-agent's own {ours} make "
                         f"{len(tags) + ours} tags; AWS allows {MAX_TAGS} per activation",
                         f"give at most {MAX_TAGS - ours} --tag options")
    return tags


def parse_hosts(text: str) -> list[str]:
    hosts = [h.strip() for h in text.split(",") if h.strip()]
    if not hosts:
        raise UsageError("--hosts is empty", "list host names or mi- IDs: --hosts a,b,mi-0123...")
    return list(dict.fromkeys(hosts))
