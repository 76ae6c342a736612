"""One region check for the node's config and the registrar's --region."""

from __future__ import annotations

from pathlib import Path

import pytest

from anywhere_agent.config import is_region, load_config
from anywhere_agent.errors import ConfigError

EVERY_PARTITION = ("us-east-1", "eu-central-2", "ap-southeast-7", "mx-central-1",
                   "us-gov-west-1", "cn-northwest-1", "us-isob-east-1", "eusc-de-east-1")


@pytest.mark.parametrize("region", EVERY_PARTITION)
def test_a_region_of_every_partition_is_accepted_by_the_config(tmp_path: Path,
                                                              region: str) -> None:
    assert is_region(region)
    assert load_config(tmp_path, {"AWS_REGION": region}).region == region


@pytest.mark.parametrize("text", ["useast1", "us-east", "US-EAST-1", "us-east-1a", "mars",
                                  "us_east_1", "-east-1"])
def test_a_malformed_region_is_refused(tmp_path: Path, text: str) -> None:
    assert not is_region(text)
    with pytest.raises(ConfigError, match="is not an AWS region name"):
        load_config(tmp_path, {"AWS_REGION": text})


def test_a_region_with_a_trailing_newline_is_not_a_region_name() -> None:
    assert not is_region("us-east-1\n")
