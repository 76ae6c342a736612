"""activate guards what it asks SSM for: a count past the standard tier, more than 50 tags."""

from __future__ import annotations

import json

from anywhere_agent.errors import ExitCode
from anywhere_agent.registrar.activations import TAG_CREATED_BY, TAG_ROLLOUT, describe_all


def test_a_million_hosts_is_refused_naming_the_count_and_the_ssm_quota(cli, lab, tmp_path):
    result = cli("activate", "--count", "1000000", "--output", str(tmp_path / "codes.json"))
    assert result.exit_code == ExitCode.REFUSED
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "Traceback" not in line
    assert "--count 1,000,000" in line and "1,000 on-premises managed nodes" in line
    assert "standard tier" in line and "--yes" in line
    assert lab.admin.calls().calls == {}  # refused before any AWS call
    assert list(tmp_path.iterdir()) == []


def test_a_count_past_the_quota_with_yes_creates_the_split_activations(cli, clients, lab,
                                                                         tmp_path):
    assert cli("ensure").exit_code == 0
    out = tmp_path / "codes.json"
    result = cli("activate", "--count", "1001", "--yes", "--output", str(out))
    assert result.exit_code == 0, result.stderr
    limits = [a["registration_limit"] for a in json.loads(out.read_text())["activations"]]
    assert limits == [1000, 1]
    assert cli("activate", "--count", "1000", "--output", str(tmp_path / "b.json")
               ).exit_code == 0  # the quota itself needs no confirmation


def test_more_than_50_tags_counting_ours_is_refused(cli, lab, tmp_path):
    tags = [arg for i in range(49) for arg in ("--tag", f"k{i}=v")]
    result = cli("activate", "--count", "1", "--output", str(tmp_path / "codes.json"), *tags)
    assert result.exit_code == ExitCode.USAGE
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1
    assert "49 --tag options and anywhere-agent's own 2 make 51 tags" in line
    assert "AWS allows 50" in line and "at most 48 --tag options" in line
    assert lab.admin.calls().calls == {}
    assert list(tmp_path.iterdir()) == []


def test_48_tags_and_ours_make_exactly_50_on_the_activation(cli, clients, lab, tmp_path):
    assert cli("ensure").exit_code == 0
    tags = [arg for i in range(48) for arg in ("--tag", f"k{i}=v")]
    result = cli("activate", "--count", "1", "--output", str(tmp_path / "codes.json"), *tags)
    assert result.exit_code == 0, result.stderr
    (made,) = describe_all(clients)
    keys = {t["Key"] for t in made["Tags"]}
    assert len(keys) == 50 and {TAG_ROLLOUT, TAG_CREATED_BY} <= keys
