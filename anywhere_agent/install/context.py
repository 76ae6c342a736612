"""What every install step receives: config, host, platform, journal and injected effects."""

from __future__ import annotations

import configparser
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anywhere_agent.config import Config
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.host.platform import Platform
from anywhere_agent.install import layout
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import PackageSource
from anywhere_agent.secret import Secret

LOG = logging.getLogger(__name__)

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Activation:
    activation_id: str
    code: Secret


@dataclass(frozen=True)
class HostCredentials:
    access_key_id: str
    secret_access_key: Secret
    session_token: Secret


def read_host_credentials(host: Host) -> HostCredentials | None:
    """The [default] profile the SSM agent writes to /root/.aws/credentials, if present."""
    text = host.read_text(layout.HOST_CREDENTIALS)
    if not text:
        return None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    if not parser.has_section("default"):
        return None
    sect = parser["default"]
    key, secret = sect.get("aws_access_key_id", ""), sect.get("aws_secret_access_key", "")
    if not key or not secret:
        return None
    return HostCredentials(key, Secret(secret), Secret(sect.get("aws_session_token", "")))


def read_registration(host: Host) -> dict[str, str]:
    """{"ManagedInstanceID", "Region"} from the SSM agent's registration file, or {}."""
    text = host.read_text(layout.SSM_REGISTRATION)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return {}
    if not isinstance(data, dict) or not str(data.get("ManagedInstanceID", "")).startswith("mi-"):
        return {}
    return {"ManagedInstanceID": str(data["ManagedInstanceID"]),
            "Region": str(data.get("Region", ""))}


def registration_key_complete(host: Host) -> bool:
    """An interrupted `-register` leaves the Vault's RegistrationKey with an empty instanceID."""
    text = host.read_text(layout.SSM_REGISTRATION_KEY)
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        return False
    return isinstance(data, dict) and str(data.get("instanceID", "")).startswith("mi-")


def machine_id(host: Host) -> str:
    return (host.read_text(layout.MACHINE_ID) or "").strip()


@dataclass
class Context:
    cfg: Config
    host: Host
    platform: Platform
    journal: Journal
    source: PackageSource
    activation: Activation | None = None
    force_reregister: bool = False
    http_get: HttpGet = loopback_get
    sleep: Sleep = time.sleep
    clock: Callable[[], float] = time.monotonic
    # Builds AWS clients from the host's SSM credentials; None when there are none. Injected
    # so unit tests never import boto3 and lab tests point at the lab control plane.
    clients_factory: Callable[[HostCredentials], Any] | None = None
    notes: list[str] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)

    def host_clients(self) -> Any | None:
        creds = read_host_credentials(self.host)
        if creds is None or self.clients_factory is None:
            return None
        return self.clients_factory(creds)

    def note(self, text: str) -> None:
        LOG.info("%s", text)
        self.notes.append(text)


def default_clients_factory(cfg: Config) -> Callable[[HostCredentials], Any]:
    """boto3 clients signed with the host's SSM credentials (never the operator's env)."""

    def make(creds: HostCredentials) -> Any:
        import boto3

        from anywhere_agent.aws.clients import AwsSettings, Clients

        session = boto3.session.Session(
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key.reveal(),
            aws_session_token=creds.session_token.reveal() or None,
            region_name=cfg.region,
        )
        proxies = {k: v for k, v in (("http", cfg.proxy.http), ("https", cfg.proxy.https)) if v}
        settings = AwsSettings(region=cfg.region, endpoints=dict(cfg.endpoints), proxies=proxies,
                               max_attempts=4, connect_timeout=3, read_timeout=10)
        return Clients(settings, session=session)

    return make
