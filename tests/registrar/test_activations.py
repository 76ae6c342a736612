"""registrar activate / revoke: sized to the rollout, codes only where asked, all or nothing."""

from __future__ import annotations

import json
import logging
import os
import stat
from datetime import datetime, timedelta, timezone

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.registrar.activations import TAG_CREATED_BY, TAG_ROLLOUT, describe_all


@pytest.fixture()
def role(cli):
    assert cli("ensure").exit_code == 0


def _codes(path):
    return [a["activation_code"] for a in json.loads(path.read_text())["activations"]]


def test_activate_for_2500_hosts_splits_into_three_activations_in_a_0600_file(
        cli, clients, role, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="anywhere_agent")
    out = tmp_path / "codes.json"
    result = cli("activate", "--count", "2500", "--yes", "--output", str(out),
                 "--rollout", "r-test",
                 "--tag", "team=platform", "--name-prefix", "dc1", "--json")
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    written = json.loads(out.read_text())["activations"]
    assert [a["registration_limit"] for a in written] == [1000, 1000, 500]
    assert all(len(a["activation_code"]) >= 20 for a in written)

    summary = result.json()
    assert summary["rollout"] == "r-test"
    assert [a["registration_limit"] for a in summary["activations"]] == [1000, 1000, 500]
    for code in _codes(out):
        assert code not in result.stdout + result.stderr + caplog.text

    found = {a["ActivationId"]: a for a in describe_all(clients)}
    assert set(found) == {a["activation_id"] for a in written}
    for a in found.values():
        tags = {t["Key"]: t["Value"] for t in a["Tags"]}
        assert tags[TAG_ROLLOUT] == "r-test"
        assert tags["team"] == "platform"
        assert tags[TAG_CREATED_BY]  # STS caller (moto answers) or the local user
        assert a["DefaultInstanceName"] == "dc1"
        assert a["Expired"] is False
    assert list(tmp_path.iterdir()) == [out]  # no temporary file left behind


def test_activate_default_expiry_is_two_hours(cli, role, tmp_path):
    out = tmp_path / "c.json"
    assert cli("activate", "--count", "3", "--output", str(out)).exit_code == 0
    expires = datetime.fromisoformat(json.loads(out.read_text())["activations"][0]["expires_at"])
    left = expires - datetime.now(timezone.utc)
    assert timedelta(minutes=118) < left <= timedelta(hours=2)


def test_activate_to_stdout_prints_the_codes_as_json_and_logs_nothing_secret(
        cli, role, caplog):
    caplog.set_level(logging.DEBUG, logger="anywhere_agent")
    result = cli("activate", "--count", "5", "--output", "-")
    assert result.exit_code == 0, result.stderr
    doc = result.json()
    [activation] = doc["activations"]
    assert activation["registration_limit"] == 5
    code = activation["activation_code"]
    assert code not in result.stderr
    assert code not in caplog.text
    assert activation["activation_id"] in caplog.text  # the ID is logged, the code is not


def test_revoke_by_rollout_deletes_every_activation_of_it_and_is_idempotent(
        cli, clients, role, tmp_path):
    cli("activate", "--count", "1200", "--yes", "--output", str(tmp_path / "a"), "--rollout", "r-a")
    cli("activate", "--count", "1", "--output", str(tmp_path / "b"), "--rollout", "r-b")
    assert len(describe_all(clients)) == 3
    result = cli("revoke", "--rollout", "r-a", "--json")
    assert result.exit_code == 0, result.stderr
    assert len(result.json()["deleted"]) == 2
    left = describe_all(clients)
    assert [{t["Key"]: t["Value"] for t in a["Tags"]}[TAG_ROLLOUT] for a in left] == ["r-b"]
    again = cli("revoke", "--rollout", "r-a", "--json")
    assert again.exit_code == 0
    assert again.json() == {"deleted": [], "not_found": []}


def test_revoke_by_id_reports_ids_already_gone_without_failing(cli, clients, role, tmp_path):
    out = tmp_path / "c.json"
    cli("activate", "--count", "2", "--output", str(out))
    aid = json.loads(out.read_text())["activations"][0]["activation_id"]
    first = cli("revoke", "--activation-id", aid, "--json")
    assert first.json() == {"deleted": [aid], "not_found": []}
    second = cli("revoke", "--activation-id", aid, "--json")
    assert second.exit_code == 0
    assert second.json() == {"deleted": [], "not_found": [aid]}
    assert describe_all(clients) == []


def test_revoke_needs_exactly_one_selector(cli, lab):
    result = cli("revoke")
    assert result.exit_code == ExitCode.USAGE
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("args", "says"), [
    (["--count", "0"], "--count 0 must be at least 1"),
    (["--count", "-3"], "--count -3 must be at least 1"),
    (["--count", "2", "--expires", "31d"], "longer than the 30 days"),
    (["--count", "2", "--expires", "721h"], "longer than the 30 days"),
    (["--count", "2", "--expires", "soon"], "is not a duration"),
    (["--count", "2", "--tag", "novalue"], "is not key=value"),
    (["--count", "2", "--tag", "=v"], "is not key=value"),
    (["--count", "2", "--tag", "k=v<script>"], "characters SSM refuses"),
    (["--count", "2", "--tag", "aws:owner=me"], "reserved key prefix"),
    (["--count", "2", "--tag", "k" * 129 + "=v"], "too long"),
])
def test_bad_activate_input_is_one_line_exit_2_and_makes_no_call(cli, lab, tmp_path, args, says):
    result = cli("activate", *args, "--output", str(tmp_path / "codes.json"))
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], result.stderr
    assert lab.admin.calls().calls == {}
    assert list(tmp_path.iterdir()) == []


def test_activate_without_output_is_refused_before_any_call(cli, lab):
    result = cli("activate", "--count", "2")
    assert result.exit_code == ExitCode.USAGE
    assert "--output is required" in result.stderr
    assert lab.admin.calls().calls == {}


def test_activate_with_a_missing_role_is_one_line_and_creates_nothing(cli, clients, lab,
                                                                      tmp_path):
    result = cli("activate", "--count", "2", "--role", "ecsAnywhereNoSuchRole",
                 "--output", str(tmp_path / "c.json"))
    assert result.exit_code == ExitCode.USAGE
    assert "IAM role ecsAnywhereNoSuchRole does not exist" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert describe_all(clients) == []
    assert list(tmp_path.iterdir()) == []


def test_activate_into_an_unwritable_directory_fails_before_creating_activations(
        cli, clients, role, tmp_path):
    result = cli("activate", "--count", "2", "--output", str(tmp_path / "missing" / "c.json"))
    assert result.exit_code == ExitCode.HOST_IO
    assert describe_all(clients) == []


def test_a_failed_split_rolls_back_the_activations_already_made(cli, clients, role, denying,
                                                                tmp_path):
    denying.deny("CreateActivation", after=2)  # the third of three fails
    result = cli("activate", "--count", "2100", "--yes", "--output", str(tmp_path / "c.json"))
    assert result.exit_code == ExitCode.CLOUD
    assert "creating activation 3 of 3: access denied" in result.stderr
    assert describe_all(clients) == []
    assert list(tmp_path.iterdir()) == []


def test_each_created_code_is_handed_to_the_redactor_it_is_given(clients, role, tmp_path):
    import io

    from anywhere_agent.registrar import activations
    from anywhere_agent.secret import RedactingFilter

    masking = RedactingFilter()
    [made] = activations.create(clients, 2, timedelta(hours=1), str(tmp_path / "c.json"),
                                io.StringIO(), redactor=masking)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "code %s",
                               (made.code.reveal(),), None)
    masking.filter(record)
    assert record.getMessage() == "code ***"
