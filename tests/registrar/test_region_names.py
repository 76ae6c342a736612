"""The registrar checks --region with the node config's one region check."""

from __future__ import annotations

from anywhere_agent.errors import ExitCode


def test_a_malformed_single_region_is_a_usage_error_before_any_call(cli, lab):
    result = cli("wait", "--hosts", "n1", "--timeout", "1s", "--region", "useast1")
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "--region useast1 is not a region name" in result.stderr
    assert lab.calls("ssm") + lab.calls("ecs") == 0


def test_the_fleet_accepts_the_region_codes_the_node_config_accepts(cli, lab):
    # Four-letter partition prefixes (the European Sovereign Cloud's eusc-) are region names.
    result = cli("fleet", "--region", "us-east-1,eusc-de-east-1", "--json")
    assert "not a region name" not in result.stderr
