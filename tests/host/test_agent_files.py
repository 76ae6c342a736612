"""agent_files: the one reader of each agent file, as every caller sees it."""

from __future__ import annotations

from pathlib import Path

from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host


def _write(root: Path, node_path: str, text: str) -> None:
    path = root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_a_registration_without_an_mi_id_is_present_but_not_valid(tmp_path: Path) -> None:
    host = Host(str(tmp_path))
    assert agent_files.registration(host) is None
    _write(tmp_path, agent_files.SSM_REGISTRATION, '{"ManagedInstanceID": "", "Region": "x"}')
    reg = agent_files.registration(host)
    assert reg is not None and not reg.valid and agent_files.read_registration(host) == {}
    _write(tmp_path, agent_files.SSM_REGISTRATION, "not json")
    assert agent_files.registration(host) == agent_files.Registration("", "")
    _write(tmp_path, agent_files.SSM_REGISTRATION,
           '{"ManagedInstanceID": "mi-0123456789abcdef0", "Region": "eu-west-1"}')
    assert agent_files.read_registration(host) == {"ManagedInstanceID": "mi-0123456789abcdef0",
                                                    "Region": "eu-west-1"}


def test_an_interrupted_register_leaves_an_incomplete_vault_key(tmp_path: Path) -> None:
    host = Host(str(tmp_path))
    assert agent_files.registration_key_instance(host) is None
    _write(tmp_path, agent_files.SSM_REGISTRATION_KEY, '{"instanceID": ""}')
    assert agent_files.registration_key_instance(host) == ""
    assert not agent_files.registration_key_complete(host)
    _write(tmp_path, agent_files.SSM_REGISTRATION_KEY, '{"instanceID": "mi-1"}')
    assert agent_files.registration_key_complete(host)


def test_host_credentials_need_a_complete_default_profile(tmp_path: Path) -> None:
    host = Host(str(tmp_path))
    _write(tmp_path, agent_files.HOST_CREDENTIALS, "[default]\naws_access_key_id = AKIA1\n")
    assert agent_files.read_host_credentials(host) is None
    _write(tmp_path, agent_files.HOST_CREDENTIALS,
           "[default]\naws_access_key_id = AKIA1\naws_secret_access_key = s\n"
           "aws_session_token = t\n[other]\nx = 1\n")
    creds = agent_files.read_host_credentials(host)
    assert creds is not None and creds.session_token.reveal() == "t"
    assert list(agent_files.credentials_file(host).profiles) == ["default", "other"]  # type: ignore[union-attr]
    _write(tmp_path, agent_files.HOST_CREDENTIALS, "no section header\n")
    assert agent_files.credentials_file(host).malformed  # type: ignore[union-attr]


def test_credentials_expiry_is_read_from_identity_config(tmp_path: Path) -> None:
    host = Host(str(tmp_path))
    assert agent_files.credentials_expires_at(host) is None
    _write(tmp_path, agent_files.SSM_IDENTITY_CONFIG,
           '{"CredentialsExpiresAt": "2026-01-01T00:00:00Z"}')
    stamp = agent_files.credentials_expires_at(host)
    assert stamp == "2026-01-01T00:00:00Z"
    assert agent_files.parse_expiry(stamp) == 1767225600.0
    assert agent_files.parse_expiry("yesterday") is None
