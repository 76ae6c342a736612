"""AccessDenied on each call a command makes: one line, exit 6, and nothing created."""

from __future__ import annotations

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.registrar.activations import TAG_CREATED_BY, describe_all


def _one_line_denied(result):
    assert result.exit_code == ExitCode.CLOUD, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "access denied (AccessDenied" in lines[0]
    assert "fix:" in lines[0]


@pytest.mark.parametrize("operation", ["GetRole", "CreateRole", "DescribeClusters"])
def test_ensure_denied_before_any_write_creates_nothing(cli, lab, denying, operation):
    denying.deny(operation)
    _one_line_denied(cli("ensure"))
    assert lab.writes() == {}


@pytest.mark.parametrize("operation", ["ListAttachedRolePolicies", "GetRolePolicy"])
def test_ensure_denied_reading_an_existing_role_changes_nothing(cli, clients, lab, denying,
                                                               operation):
    clients.client("iam").create_role(RoleName="ecsAnywhereRole", AssumeRolePolicyDocument="{}")
    lab.admin.reset_calls()
    denying.deny(operation)
    _one_line_denied(cli("ensure"))
    assert lab.writes() == {}


@pytest.mark.parametrize("operation", ["AttachRolePolicy", "PutRolePolicy", "CreateCluster"])
def test_ensure_denied_midway_is_one_line_and_a_rerun_with_rights_converges(cli, lab, denying,
                                                                            operation):
    denying.deny(operation)
    _one_line_denied(cli("ensure"))
    denying.deny()
    assert cli("ensure", "--json").json()["changed"] is True
    assert cli("ensure", "--json").json()["changed"] is False


def test_activate_denied_creates_no_activation_and_leaves_no_file(cli, clients, lab, denying,
                                                                  tmp_path):
    assert cli("ensure").exit_code == 0
    denying.deny("CreateActivation")
    _one_line_denied(cli("activate", "--count", "5", "--output", str(tmp_path / "c.json")))
    assert describe_all(clients) == []
    assert list(tmp_path.iterdir()) == []


def test_activate_still_works_without_iam_read_or_sts_rights(cli, clients, lab, denying,
                                                             tmp_path):
    assert cli("ensure").exit_code == 0
    denying.deny("GetRole", "GetCallerIdentity")
    result = cli("activate", "--count", "5", "--output", str(tmp_path / "c.json"))
    assert result.exit_code == 0, result.stderr
    [activation] = describe_all(clients)
    tags = {t["Key"]: t["Value"] for t in activation["Tags"]}
    assert tags[TAG_CREATED_BY].startswith("user:")  # the local user, since STS said no


@pytest.mark.parametrize("operation", ["DescribeActivations", "DeleteActivation"])
def test_revoke_denied_is_one_line(cli, clients, lab, denying, tmp_path, operation):
    assert cli("ensure").exit_code == 0
    cli("activate", "--count", "2", "--output", str(tmp_path / "c.json"), "--rollout", "r-x")
    denying.deny(operation)
    _one_line_denied(cli("revoke", "--rollout", "r-x"))
    assert len(describe_all(clients)) == 1


@pytest.mark.parametrize(("operation", "args"), [
    ("ListClusters", []),
    ("DescribeClusters", ["--cluster", "prod"]),
    ("DescribeInstanceInformation", ["--cluster", "prod"]),
    ("ListContainerInstances", ["--cluster", "prod"]),
    ("DescribeContainerInstances", ["--cluster", "prod"]),
])
def test_fleet_and_wait_denied_are_one_line(cli, lab, denying, operation, args):
    lab.admin.seed(3, cluster="prod")
    denying.deny(operation)
    _one_line_denied(cli("fleet", *args))
    _one_line_denied(cli("wait", "--hosts", "seed-0", "--timeout", "1m", *args))


@pytest.mark.parametrize("operation", ["DescribeActivations", "DeregisterContainerInstance"])
def test_prune_denied_is_one_line_and_removes_nothing(cli, lab, denying, operation):
    lab.seed_stale(2, "prod", days=8)
    denying.deny(operation)
    _one_line_denied(cli("prune", "--yes"))
    assert lab.writes() == {}


def test_prune_denied_on_the_ssm_side_stops_at_the_first_item_and_a_rerun_finishes(
        cli, lab, denying):
    lab.seed_stale(2, "prod", days=8)
    denying.deny("DeregisterManagedInstance")
    _one_line_denied(cli("prune", "--yes"))
    denying.deny()
    result = cli("prune", "--yes", "--json")
    assert result.exit_code == 0
    assert cli("fleet", "--json").json()["hosts"] == []
