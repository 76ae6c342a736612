"""The agents' files on a node (AWS's paths and ours) and the one reader of each.

Nothing else names these paths or parses these files: the SSM agent's registration, its Vault
key, identity_config.json, the role credentials file, ecs.config, machine-id, the agents'
data dirs and our own state dir. Readers take the host gateway; `parse_*` take text (the lab
reads a file out of a host and parses it here too).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from anywhere_agent.host.gateway import Host
from anywhere_agent.host.keyvalue import parse_env
from anywhere_agent.secret import Secret

# SSM agent (AWS's layout).
SSM_UNIT = "amazon-ssm-agent"
SSM_BINARY = "/usr/bin/amazon-ssm-agent"
SSM_PACKAGE = "amazon-ssm-agent"
SSM_CONFIG = "/etc/amazon/ssm/amazon-ssm-agent.json"
SSM_DATA_DIR = "/var/lib/amazon/ssm"
SSM_REGISTRATION = SSM_DATA_DIR + "/registration"
SSM_VAULT = SSM_DATA_DIR + "/Vault"
SSM_REGISTRATION_KEY = SSM_VAULT + "/Store/RegistrationKey"
SSM_RUNTIME_CONFIG = SSM_DATA_DIR + "/runtimeconfig"
# Where the SSM agent records when its credentials expire (CredentialsExpiresAt, RFC 3339 UTC);
# the credentials file itself carries none.
SSM_IDENTITY_CONFIG = SSM_RUNTIME_CONFIG + "/identity_config.json"
SSM_AGENT_LOG = "/var/log/amazon/ssm/amazon-ssm-agent.log"
HOST_CREDENTIALS = "/root/.aws/credentials"

# ECS agent (AWS's layout).
ECS_UNIT = "ecs"
ECS_PACKAGE = "amazon-ecs-init"
ECS_CONFIG = "/etc/ecs/ecs.config"
ECS_DATA_DIR = "/var/lib/ecs"
ECS_VAR_CONFIG = ECS_DATA_DIR + "/ecs.config"
ECS_AGENT_DB = ECS_DATA_DIR + "/data/agent.db"
ECS_AGENT_LOG = "/var/log/ecs/ecs-agent.log"
# ECS Exec's dependencies, which ecs-init bind-mounts into the agent (host/ecs_exec.py).
ECS_EXEC_DIR = ECS_DATA_DIR + "/deps/execute-command"

DOCKER_UNIT = "docker"
DOCKER_DATA_DIR = "/var/lib/docker"
DOCKER_SOCKET = "/var/run/docker.sock"
DOCKER_DAEMON_JSON = "/etc/docker/daemon.json"
MACHINE_ID = "/etc/machine-id"

# Ours.
AGENT_UNIT = "anywhere-agent"
AGENT_UNIT_PATH = "/etc/systemd/system/anywhere-agent.service"
STATE_DIR = "/var/lib/anywhere-agent"
STATE_FILE = STATE_DIR + "/state.json"
HEALTH_FILE = STATE_DIR + "/health.json"
LOCK_FILE = STATE_DIR + "/install.lock"
PACKAGE_CACHE = "/var/cache/anywhere-agent/packages"
CONFIG_DIR = "/etc/anywhere-agent"
APT_PROXY_CONF = "/etc/apt/apt.conf.d/90anywhere-agent-proxy"
PROXY_DROPIN = "http-proxy.conf"  # AWS's documented name for the proxy drop-in
RESTART_DROPIN = "10-anywhere-agent.conf"


def dropin(unit: str, name: str) -> str:
    return f"/etc/systemd/system/{unit}.service.d/{name}"


def proxy_dropin(unit: str) -> str:
    return dropin(unit, PROXY_DROPIN)


def restart_dropin(unit: str) -> str:
    return dropin(unit, RESTART_DROPIN)


def proxy_env(unit: str) -> str:
    """The 0600 EnvironmentFile a unit's proxy drop-in names (under CONFIG_DIR, which
    uninstall removes)."""
    return f"{CONFIG_DIR}/proxy/{unit}.env"


# -- the SSM registration -------------------------------------------------------------------

@dataclass(frozen=True)
class Registration:
    """What the registration file says; `instance_id` is "" when it names none."""

    instance_id: str
    region: str

    @property
    def valid(self) -> bool:
        return self.instance_id.startswith("mi-")


def parse_registration(text: str) -> Registration:
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        return Registration("", "")
    return Registration(_text(data, "ManagedInstanceID"), _text(data, "Region"))


def registration(host: Host) -> Registration | None:
    """The registration file, or None when there is none (HostIOError when unreadable)."""
    text = host.read_text(SSM_REGISTRATION)
    return None if text is None else parse_registration(text)


def read_registration(host: Host) -> dict[str, str]:
    """{"ManagedInstanceID", "Region"} of a valid (mi-) registration, or {}."""
    reg = registration(host)
    if reg is None or not reg.valid:
        return {}
    return {"ManagedInstanceID": reg.instance_id, "Region": reg.region}


def registration_key_instance(host: Host) -> str | None:
    """The instanceID in the Vault's RegistrationKey ("" when empty), None without the key.

    An interrupted `-register` leaves the key with an empty instanceID."""
    text = host.read_text(SSM_REGISTRATION_KEY)
    if text is None:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return ""
    return _text(data, "instanceID") if isinstance(data, dict) else ""


def registration_key_complete(host: Host) -> bool:
    return (registration_key_instance(host) or "").startswith("mi-")


# -- the SSM agent's role credentials -------------------------------------------------------

@dataclass(frozen=True)
class HostCredentials:
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret


@dataclass(frozen=True)
class CredentialsFile:
    """The credentials file's profiles; `malformed` when it is not an INI file at all."""

    profiles: dict[str, dict[str, str]]
    malformed: bool = False


def parse_credentials(text: str) -> CredentialsFile:
    # Imported here: the supervisor reads only the file's age and expiry unless reporting
    # is on, and configparser would stay resident in the daemon.
    import configparser

    # A section literally named "default" must stay a section, not configparser's defaults.
    parser = configparser.RawConfigParser(default_section="\x00", strict=False)
    try:
        parser.read_string(text)
    except configparser.Error:
        return CredentialsFile({}, malformed=True)
    return CredentialsFile({name: dict(parser.items(name)) for name in parser.sections()})


def credentials_file(host: Host) -> CredentialsFile | None:
    text = host.read_text(HOST_CREDENTIALS)
    return None if text is None else parse_credentials(text)


def read_host_credentials(host: Host) -> HostCredentials | None:
    """The [default] profile the SSM agent writes to /root/.aws/credentials, if complete."""
    found = credentials_file(host)
    sect = (found.profiles if found else {}).get("default", {})
    key, secret = sect.get("aws_access_key_id", ""), sect.get("aws_secret_access_key", "")
    if not key or not secret:
        return None
    return HostCredentials(key, Secret(secret), Secret(sect.get("aws_session_token", "")))


def credentials_expires_at(host: Host) -> str | None:
    """CredentialsExpiresAt as identity_config.json records it (HostIOError when unreadable)."""
    try:
        doc = json.loads(host.read_text(SSM_IDENTITY_CONFIG) or "{}")
    except ValueError:
        return None
    value = doc.get("CredentialsExpiresAt") if isinstance(doc, dict) else None
    return value if isinstance(value, str) else None


def parse_expiry(value: str | None) -> float | None:
    """An RFC 3339 stamp as epoch seconds (UTC when it names no zone); None when unparsable."""
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


# -- the ECS agent, the host, our state -----------------------------------------------------

def ecs_config_cluster(host: Host) -> str:
    """The ECS_CLUSTER that /etc/ecs/ecs.config names ("" when none)."""
    return parse_env(host.read_text(ECS_CONFIG) or "").get("ECS_CLUSTER", "")


def machine_id(host: Host) -> str:
    return (host.read_text(MACHINE_ID) or "").strip()


def read_state(host: Host) -> dict[str, Any] | None:
    """Our state.json: None when absent, {} when not an object; ValueError when torn."""
    text = host.read_text(STATE_FILE)
    if not text:
        return None
    data = json.loads(text)
    return data if isinstance(data, dict) else {}


def _text(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key)
    return value if isinstance(value, str) else "" if value is None else str(value)
