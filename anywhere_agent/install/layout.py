"""Where things live on an ECS Anywhere node (AWS's paths and ours), in one place."""

from __future__ import annotations

# SSM agent (AWS's layout).
SSM_UNIT = "amazon-ssm-agent"
SSM_BINARY = "/usr/bin/amazon-ssm-agent"
SSM_PACKAGE = "amazon-ssm-agent"
SSM_CONFIG = "/etc/amazon/ssm/amazon-ssm-agent.json"
SSM_REGISTRATION = "/var/lib/amazon/ssm/registration"
SSM_REGISTRATION_KEY = "/var/lib/amazon/ssm/Vault/Store/RegistrationKey"
HOST_CREDENTIALS = "/root/.aws/credentials"
# Where the SSM agent records when those credentials expire (CredentialsExpiresAt, RFC 3339).
SSM_IDENTITY_CONFIG = "/var/lib/amazon/ssm/runtimeconfig/identity_config.json"

# ECS agent (AWS's layout).
ECS_UNIT = "ecs"
ECS_PACKAGE = "amazon-ecs-init"
ECS_CONFIG = "/etc/ecs/ecs.config"
ECS_VAR_CONFIG = "/var/lib/ecs/ecs.config"
ECS_AGENT_DB = "/var/lib/ecs/data/agent.db"

DOCKER_UNIT = "docker"

# Ours.
AGENT_UNIT = "anywhere-agent"
AGENT_UNIT_PATH = "/etc/systemd/system/anywhere-agent.service"
STATE_DIR = "/var/lib/anywhere-agent"
STATE_FILE = STATE_DIR + "/state.json"
LOCK_FILE = STATE_DIR + "/install.lock"
PACKAGE_CACHE = "/var/cache/anywhere-agent/packages"
CONFIG_DIR = "/etc/anywhere-agent"
APT_PROXY_CONF = "/etc/apt/apt.conf.d/90anywhere-agent-proxy"
MACHINE_ID = "/etc/machine-id"


def dropin(unit: str, name: str) -> str:
    return f"/etc/systemd/system/{unit}.service.d/{name}"


PROXY_DROPIN = "http-proxy.conf"  # AWS's documented name for the proxy drop-in


def proxy_env(unit: str) -> str:
    """The 0600 EnvironmentFile a unit's proxy drop-in names (under CONFIG_DIR, which
    uninstall removes)."""
    return f"{CONFIG_DIR}/proxy/{unit}.env"
RESTART_DROPIN = "10-anywhere-agent.conf"
