"""What every install step receives: config, host, platform, journal and injected effects."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anywhere_agent.config import Config
from anywhere_agent.host.agent_files import HostCredentials, read_host_credentials
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import Platform, host_platform
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import PackageSource
from anywhere_agent.secret import Secret

LOG = logging.getLogger(__name__)

Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Activation:
    activation_id: str
    code: Secret


@dataclass
class InstallContext:
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
    # The managed instance this run registered (or adopted), and the one its undo removed
    # from SSM again: the failure message names what is left in SSM.
    registered_now: str = ""
    deregistered_again: str = ""

    def host_clients(self) -> Any | None:
        creds = read_host_credentials(self.host)
        if creds is None or self.clients_factory is None:
            return None
        return self.clients_factory(creds)

    def note(self, text: str) -> None:
        LOG.info("%s", text)
        self.notes.append(text)


def build_context(cfg: Config, host: Host, activation: Activation | None = None,
                  reregister: bool = False) -> InstallContext:
    """The context a real run uses: the host's platform, journal and package source, and
    AWS clients signed with the host's own SSM credentials."""
    platform = host_platform(host)
    pm = PackageManager(host, platform.package_manager, cfg.proxy.environment())
    return InstallContext(cfg=cfg, host=host, platform=platform, journal=Journal(host),
                          source=PackageSource(cfg, host, platform, pm), activation=activation,
                          force_reregister=reregister,
                          clients_factory=default_clients_factory(cfg))


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
