"""Clients: settings apply to the session they build, and to nothing else in the process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anywhere_agent.aws.clients import AwsSettings, Clients


def test_a_credentials_file_serves_its_session_and_leaves_the_environment_alone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                 "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    other = tmp_path / "operator-credentials"
    other.write_text("[default]\naws_access_key_id = AKIAOPERATOR\n"
                     "aws_secret_access_key = operator\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(other))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    host_file = tmp_path / "ssm-credentials"
    host_file.write_text("[default]\naws_access_key_id = ASIAHOSTROLE\n"
                         "aws_secret_access_key = host\naws_session_token = token\n")

    clients = Clients(AwsSettings(region="us-east-1", credentials_file=str(host_file)))
    creds = clients.client("sts")._request_signer._credentials
    assert creds.access_key == "ASIAHOSTROLE"
    assert os.environ["AWS_SHARED_CREDENTIALS_FILE"] == str(other)
    # A client built afterwards without the setting still sees the operator's file.
    plain = Clients(AwsSettings(region="us-east-1")).client("sts")._request_signer._credentials
    assert plain.access_key == "AKIAOPERATOR"
