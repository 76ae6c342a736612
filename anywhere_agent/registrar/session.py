"""The registrar's AWS clients: region and retry settings resolved once per command."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Optional

from anywhere_agent.aws.clients import AwsSettings, Clients
from anywhere_agent.config import is_region
from anywhere_agent.errors import UsageError
from anywhere_agent.registrar import fleet

# Central calls come in bursts (a rollout, a 5,000-host fleet read) against rate-based
# throttling: adaptive mode slows the client down instead of burning its attempts, and 8
# attempts ride out a bad minute while still bounding every call. botocore's own variables
# (AWS_RETRY_MODE, AWS_MAX_ATTEMPTS) override both, as they do for any AWS tool.
RETRY_MODE = "adaptive"
MAX_ATTEMPTS = 8


def make_clients(region: Optional[str], env: Mapping[str, str] | None = None) -> Clients:
    """Clients for --region, else AWS_REGION / AWS_DEFAULT_REGION / the profile's region."""
    env = os.environ if env is None else env
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    if not region:
        import boto3

        region = boto3.session.Session().region_name
    if not region:
        raise UsageError("no AWS region", "pass --region or set AWS_REGION")
    if not is_region(region):
        raise UsageError(f"--region {region} is not a region name",
                         "give a region code such as us-east-1")
    mode = env.get("AWS_RETRY_MODE") or RETRY_MODE
    attempts = env.get("AWS_MAX_ATTEMPTS") or str(MAX_ATTEMPTS)
    if mode not in ("standard", "adaptive", "legacy") or not attempts.isdigit() \
            or int(attempts) < 1:
        raise UsageError(f"AWS_RETRY_MODE={mode!r} / AWS_MAX_ATTEMPTS={attempts!r} invalid",
                         "use standard or adaptive, and a positive number of attempts")
    return Clients(AwsSettings(region=region, retry_mode=mode, max_attempts=int(attempts)))


def fleet_clients(regions: Sequence[str]) -> dict[str, Clients]:
    """Clients for each region (a,b or repeated), sharing one session built for bulk reads."""
    names = list(dict.fromkeys(r.strip() for item in regions for r in item.split(",")
                               if r.strip()))
    bad = [r for r in names if not is_region(r)]
    if bad:
        raise UsageError(f"--region {', '.join(bad)} is not a region name",
                         "give region codes such as us-east-1, separated by commas")
    base = make_clients(names[0] if names else None)  # the default region and retry settings
    session = fleet.reading_session()
    return {r: Clients(dataclasses.replace(base.settings, region=r), session)
            for r in names or [base.settings.region]}
