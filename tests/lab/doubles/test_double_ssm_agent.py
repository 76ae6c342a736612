"""The SSM agent double: its command line, the files it writes, and its daemon's wire calls."""

from __future__ import annotations

import base64
import configparser
import json
import re
import stat
import subprocess
import time
from pathlib import Path

from doubles_helpers import (
    INSTANCE_ID,
    PYTHON,
    SSM,
    FakePlane,
    Processes,
    double_env,
    run_ssm,
    wait_until,
    write_ssm_config,
)

DATA = "var/lib/amazon/ssm"


def _register(
    root: Path, plane: FakePlane, *extra: str, **kw: object
) -> subprocess.CompletedProcess[str]:
    write_ssm_config(root, plane.url)
    return run_ssm(
        root,
        "-register",
        "-code",
        "good-code",
        "-id",
        "act-1",
        "-region",
        "us-east-1",
        *extra,
        **kw,
    )  # type: ignore[arg-type]


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_version_flag_prints_the_real_format_and_says_it_is_a_lab_double(lab_root: Path) -> None:
    result = run_ssm(lab_root, "-version")
    assert result.returncode == 0
    assert re.match(r"SSM Agent version: 3\.\d+\.\d+\.\d+ ", result.stdout)
    assert "lab double" in result.stdout


def test_an_undefined_flag_exits_2_like_go_flag_parsing(lab_root: Path) -> None:
    result = run_ssm(lab_root, "-nosuchflag")
    assert result.returncode == 2
    assert "flag provided but not defined: -nosuchflag" in result.stderr
    assert "LAB DOUBLE" in result.stderr


def test_register_sends_one_anonymous_request_with_the_real_body(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    result = _register(lab_root, fake_plane, "-y")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "Successfully registered the instance with AWS SSM using Managed instance-id: "
        + INSTANCE_ID
        in result.stdout
    )
    [seen] = fake_plane.seen
    assert seen.target == "AmazonSSM.RegisterManagedInstance"
    assert seen.headers["content-type"] == "application/x-amz-json-1.1"
    assert "authorization" not in seen.headers and "x-amz-date" not in seen.headers
    body = seen.json
    assert set(body) == {
        "ActivationCode",
        "ActivationId",
        "Fingerprint",
        "PublicKey",
        "PublicKeyType",
    }
    assert body["ActivationCode"] == "good-code" and body["ActivationId"] == "act-1"
    assert body["PublicKeyType"] == "Rsa"
    assert re.fullmatch(
        r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", body["Fingerprint"]
    )
    # PKIX DER of an RSA key starts with a SEQUENCE and the rsaEncryption OID.
    assert base64.b64decode(body["PublicKey"])[:2] == b"\x30\x82"


def test_register_writes_registration_vault_and_fingerprint_files_in_the_real_formats(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    data = lab_root / DATA
    registration = data / "registration"
    assert json.loads(registration.read_text()) == {
        "ManagedInstanceID": INSTANCE_ID,
        "Region": "us-east-1",
    }
    manifest = json.loads((data / "Vault/Manifest").read_text())
    assert manifest == {
        "InstanceFingerprint": "/var/lib/amazon/ssm/Vault/Store/InstanceFingerprint",
        "RegistrationKey": "/var/lib/amazon/ssm/Vault/Store/RegistrationKey",
    }
    key = json.loads((data / "Vault/Store/RegistrationKey").read_text())
    assert set(key) == {
        "instanceID",
        "region",
        "instanceType",
        "availabilityZone",
        "privateKey",
        "publicKey",
        "privateKeyType",
        "privateKeyCreatedDate",
    }
    assert key["instanceID"] == INSTANCE_ID and key["region"] == "us-east-1"
    assert key["privateKeyType"] == "Rsa"
    assert base64.b64decode(key["privateKey"])[:2] == b"\x30\x82"  # PKCS#1 DER
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+ \+0000 UTC", key["privateKeyCreatedDate"]
    )
    fp = json.loads((data / "Vault/Store/InstanceFingerprint").read_text())
    assert fp["fingerprint"] == fake_plane.seen[0].json["Fingerprint"]
    assert fp["similarityThreshold"] == 40
    assert fp["hardwareHash"]["machine-id"] == (lab_root / "etc/machine-id").read_text().strip()
    for f in (
        registration,
        data / "Vault/Manifest",
        data / "Vault/Store/RegistrationKey",
        data / "Vault/Store/InstanceFingerprint",
    ):
        assert _mode(f) == 0o600, f
    assert _mode(data / "Vault") == 0o700


def test_an_existing_registration_without_y_is_refused_when_stdin_is_not_a_terminal(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    before = (lab_root / DATA / "Vault/Store/RegistrationKey").read_text()
    result = _register(lab_root, fake_plane)
    assert result.returncode == 1
    assert "Instance already registered. Would you like to override existing" in result.stdout
    assert "Registration failed due to EOF" in result.stdout
    assert len(fake_plane.calls("RegisterManagedInstance")) == 1
    assert (lab_root / DATA / "Vault/Store/RegistrationKey").read_text() == before


def test_answering_no_cancels_and_answering_yes_registers_again(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    no = subprocess.run(
        [PYTHON, str(SSM), "-register", "-code", "c", "-id", "i", "-region", "us-east-1"],
        env=double_env(lab_root),
        input="no\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert no.returncode == 1 and "Registration canceled by user" in no.stdout
    yes = subprocess.run(
        [PYTHON, str(SSM), "-register", "-code", "c", "-id", "i", "-region", "us-east-1"],
        env=double_env(lab_root),
        input="yes\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert yes.returncode == 0
    assert len(fake_plane.calls("RegisterManagedInstance")) == 2


def test_y_overrides_an_existing_registration_without_asking(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    result = _register(lab_root, fake_plane, "-y")
    assert result.returncode == 0
    assert "Would you like to override" not in result.stdout


def test_a_bad_activation_prints_the_real_failure_message_and_exits_1(
    lab_root: Path, fake_plane: FakePlane
) -> None:
    write_ssm_config(lab_root, fake_plane.url)
    result = run_ssm(
        lab_root, "-register", "-code", "bad-code", "-id", "a", "-region", "us-east-1", "-y"
    )
    assert result.returncode == 1
    assert (
        "Registration failed due to error registering the instance with AWS SSM. "
        "InvalidActivation: Activation ID is not valid"
    ) in result.stdout
    key = json.loads((lab_root / DATA / "Vault/Store/RegistrationKey").read_text())
    assert (
        key["instanceID"] == "" and key["privateKey"]
    )  # as an interrupted real register leaves it
    assert not (lab_root / DATA / "registration").exists()
    log = (lab_root / "var/log/amazon/ssm/amazon-ssm-agent.log").read_text()
    assert "Registration failed due to error registering" in log


def test_an_unreachable_endpoint_fails_with_a_request_error(lab_root: Path) -> None:
    write_ssm_config(lab_root, "http://127.0.0.1:9")
    result = run_ssm(lab_root, "-register", "-code", "c", "-id", "a", "-region", "us-east-1", "-y")
    assert result.returncode == 1
    assert (
        "error registering the instance with AWS SSM. RequestError: send request failed"
        in result.stdout
    )


def test_register_without_code_prints_usage_and_exits_1(lab_root: Path) -> None:
    result = run_ssm(lab_root, "-register", "-region", "us-east-1")
    assert result.returncode == 1
    assert "Command-line Usage" in result.stderr


def test_clear_empties_the_registration_key(lab_root: Path, fake_plane: FakePlane) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    result = run_ssm(lab_root, "-register", "-clear")
    assert result.returncode == 0
    assert "Registration information has been removed from the instance." in result.stdout
    key = json.loads((lab_root / DATA / "Vault/Store/RegistrationKey").read_text())
    assert key["instanceID"] == "" and key["privateKey"] == ""


def test_the_daemon_without_a_registration_logs_no_identity_and_exits_0(lab_root: Path) -> None:
    result = run_ssm(lab_root)
    assert result.returncode == 0
    assert "Agent failed to assume any identity" in result.stdout


def _start_daemon(root: Path, procs: Processes, tmp: Path, **env: str):  # type: ignore[no-untyped-def]
    base = {
        # 600 lab seconds per second: the 5-minute health cadence takes half a second.
        "ANYWHERE_LAB_TIME_SCALE": "600",
        "ANYWHERE_LAB_SSM_RETRY_MAX_SECONDS": "0.5",
    }
    base.update(env)
    return procs.start([PYTHON, str(SSM)], double_env(root, **base), tmp / "ssm-daemon.out")


def test_the_daemon_fetches_credentials_chunked_and_writes_the_real_files(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    _start_daemon(lab_root, processes, tmp_path)
    [token] = fake_plane.wait_for("RequestManagedInstanceRoleToken")
    assert token.chunked and "content-length" not in token.headers
    assert set(token.json) == {"Fingerprint"}
    assert re.match(
        rf"AWS4-HMAC-SHA256 Credential={INSTANCE_ID}/\d{{8}}/us-east-1/ssm/aws4_request, "
        r"SignedHeaders=[a-z0-9;-]+, Signature=\S+$",
        token.headers["authorization"],
    )
    creds_file = lab_root / "root/.aws/credentials"
    wait_until(creds_file.exists, what="credentials file")
    ini = configparser.ConfigParser()
    ini.read_string(creds_file.read_text())
    assert set(ini["default"]) == {
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
    }
    assert ini["default"]["aws_access_key_id"].startswith("ASIALAB")
    assert _mode(creds_file) == 0o600
    ident = json.loads((lab_root / DATA / "runtimeconfig/identity_config.json").read_text())
    assert ident["SchemaVersion"] == "1.1" and ident["IdentityType"] == "OnPrem"
    assert ident["InstanceId"] == INSTANCE_ID and ident["CredentialSource"] == "SSM"
    assert ident["ShareFile"] == "/root/.aws/credentials" and ident["ShareProfile"] == ""
    assert ident["CredentialsExpiresAt"].endswith("Z") and ident["CredentialsRetrievedAt"].endswith(
        "Z"
    )
    [ping, *_] = fake_plane.wait_for("UpdateInstanceInformation")
    assert ping.json["InstanceId"] == INSTANCE_ID and ping.json["PlatformType"] == "Linux"
    assert ping.json["AgentName"] == "amazon-ssm-agent"
    assert f"Credential={ini['default']['aws_access_key_id']}/" in ping.headers["authorization"]
    assert ping.headers["x-amz-security-token"] == ini["default"]["aws_session_token"]
    fake_plane.wait_for("UpdateInstanceInformation", count=3)  # now, 0-300 s later, every 300 s
    [poll, *_] = fake_plane.wait_for("GetMessages")
    assert poll.json["Destination"] == INSTANCE_ID and poll.json["VisibilityTimeoutInSeconds"] == 10
    assert "/us-east-1/ec2messages/aws4_request" in poll.headers["authorization"]


def test_the_health_ping_keeps_the_real_agents_cadence(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    started = time.monotonic()
    _start_daemon(lab_root, processes, tmp_path, ANYWHERE_LAB_TIME_SCALE="300")
    fake_plane.wait_for("UpdateInstanceInformation", count=5, timeout=20)
    elapsed = time.monotonic() - started
    pings = len(fake_plane.calls("UpdateInstanceInformation"))
    # At 300x, 300 s last one second: pings at 0, 0-1 s, then each second after that.
    assert pings <= elapsed + 3, (pings, elapsed)
    polls = len(fake_plane.calls("GetMessages"))
    assert polls <= elapsed / 2.2 + 2, (polls, elapsed)  # never a hot loop


def test_the_daemon_never_logs_a_proxy_password(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    secret = "pr0xy-Passw0rd"
    proc = _start_daemon(lab_root, processes, tmp_path,
                         https_proxy=f"http://op:{secret}@proxy.invalid:3128",
                         no_proxy="127.0.0.1,localhost")
    fake_plane.wait_for("UpdateInstanceInformation")
    log_text = (lab_root / "var/log/amazon/ssm/amazon-ssm-agent.log").read_text()
    assert "https_proxy: http://op:xxxxx@proxy.invalid:3128" in log_text
    assert secret not in log_text
    assert proc.poll() is None


def test_the_daemon_keeps_other_profiles_in_the_shared_credentials_file(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    creds_file = lab_root / "root/.aws/credentials"
    creds_file.parent.mkdir(parents=True)
    creds_file.write_text("[other]\naws_access_key_id = KEEP\n")
    _start_daemon(lab_root, processes, tmp_path)
    wait_until(lambda: "[default]" in creds_file.read_text(), what="default profile")
    ini = configparser.ConfigParser()
    ini.read_string(creds_file.read_text())
    assert ini["other"]["aws_access_key_id"] == "KEEP"


def test_the_daemon_refreshes_credentials_at_half_life(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    fake_plane.token_ttl = 4.0
    assert _register(lab_root, fake_plane).returncode == 0
    started = time.monotonic()
    _start_daemon(lab_root, processes, tmp_path)
    fake_plane.wait_for("RequestManagedInstanceRoleToken", count=2, timeout=10)
    assert 1.5 < time.monotonic() - started < 8


def test_a_centrally_deregistered_instance_keeps_the_daemon_running_and_retrying(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    fake_plane.deregistered = True
    proc = _start_daemon(lab_root, processes, tmp_path)
    fake_plane.wait_for("RequestManagedInstanceRoleToken", count=3)
    assert proc.poll() is None
    log = (lab_root / "var/log/amazon/ssm/amazon-ssm-agent.log").read_text()
    assert "Retrieve credentials produced error: InvalidInstanceId" in log
    assert not fake_plane.calls("UpdateInstanceInformation")  # no credentials, no ping


def test_the_ssm_stale_fault_stops_refreshing_and_pinging(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    _start_daemon(lab_root, processes, tmp_path)
    fake_plane.wait_for("UpdateInstanceInformation")
    fault = lab_root / "run/anywhere-lab/faults/ssm-stale"
    fault.parent.mkdir(parents=True)
    fault.touch()
    time.sleep(0.8)
    frozen = len(fake_plane.calls("UpdateInstanceInformation"))
    time.sleep(1.5)
    assert len(fake_plane.calls("UpdateInstanceInformation")) == frozen
    fault.unlink()
    fake_plane.wait_for("UpdateInstanceInformation", count=frozen + 1)


def test_the_daemon_sends_through_http_proxy_from_the_environment(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    # The endpoint host does not resolve: only a proxy can carry the call (to the fake).
    write_ssm_config(lab_root, "http://ssm.lab-unresolvable.invalid:4566")
    _start_daemon(lab_root, processes, tmp_path, http_proxy=fake_plane.url)
    [token] = fake_plane.wait_for("RequestManagedInstanceRoleToken")
    assert token.path == "http://ssm.lab-unresolvable.invalid:4566/"


def test_sigterm_stops_the_daemon_with_exit_0(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    assert _register(lab_root, fake_plane).returncode == 0
    proc = _start_daemon(lab_root, processes, tmp_path)
    fake_plane.wait_for("UpdateInstanceInformation")
    assert processes.stop(proc) == 0
