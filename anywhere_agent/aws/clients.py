"""boto3 clients built one way: endpoint overrides, bounded standard retries, proxies, errors."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import botocore.session

from anywhere_agent.aws.skew import CLOCK_FIX, is_clock_skew
from anywhere_agent.errors import AgentError, CloudError, NetworkError

LOG = logging.getLogger(__name__)


class TransientCloudError(CloudError):
    """AWS said "not now" (throttling, a 5xx) even after botocore's retries: a poller that
    still has time left tries again on its next round instead of giving up."""


@dataclass(frozen=True)
class AwsSettings:
    region: str
    endpoints: Mapping[str, str] = field(default_factory=dict)  # service -> URL, "default"
    proxies: Mapping[str, str] = field(default_factory=dict)  # {"http": ..., "https": ...}
    max_attempts: int = 5
    retry_mode: str = "standard"  # botocore's; "adaptive" for bulk central calls
    connect_timeout: float = 5.0
    read_timeout: float = 20.0
    profile: str | None = None
    credentials_file: str | None = None  # e.g. the host's SSM-written /root/.aws/credentials


class Clients:
    """Creates and caches boto3 clients for one region/endpoint/proxy setting."""

    def __init__(self, settings: AwsSettings, session: Any = None) -> None:
        self.settings = settings
        if session is None:
            session = _session(settings)
        self._session = session
        self._cache: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._cache:
            s = self.settings
            cfg = botocore.config.Config(
                region_name=s.region,
                retries={"mode": s.retry_mode, "max_attempts": s.max_attempts},  # type: ignore[arg-type]
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
                proxies=dict(s.proxies) or None,
                user_agent_extra="anywhere-agent",
            )
            endpoint = s.endpoints.get(service) or s.endpoints.get("default") or None
            self._cache[service] = self._session.client(service, config=cfg,
                                                        endpoint_url=endpoint)
        return self._cache[service]


_LOADER: list[Any] = []


def _loader(core: Any) -> Any:
    """One botocore data loader per process, shared by every session made here. Each loader
    lists botocore's ~400 service directories and parses each model it loads (hundreds of KB
    of JSON): install makes a session with the node's credentials before registering and one
    after, and the registrar one per region. Sessions keep their own credentials and config."""
    if not _LOADER:
        _LOADER.append(core.get_component("data_loader"))
    return _LOADER[0]


def _session(settings: AwsSettings) -> Any:
    """A boto3 session for `settings`; a credentials file is set on this session only (as
    botocore's `credentials_file` variable), never in the process environment, where every
    other client and child process would inherit it."""
    core = botocore.session.Session(profile=settings.profile)
    core.register_component("data_loader", _loader(core))
    if settings.credentials_file:
        core.set_config_variable("credentials_file", settings.credentials_file)
    return boto3.session.Session(botocore_session=core, region_name=settings.region)


_ACCESS = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
           "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
           "SignatureDoesNotMatch", "InvalidSignatureException", "MissingAuthenticationToken"}


# botocore's throttling codes (standard retry mode) less LimitExceededException, which IAM
# also uses for a full quota: retrying that would not help.
_THROTTLING = frozenset({"Throttling", "ThrottlingException", "ThrottledException",
                         "RequestThrottledException", "TooManyRequestsException",
                         "ProvisionedThroughputExceededException", "TransactionInProgressException",
                         "RequestLimitExceeded", "BandwidthLimitExceeded", "RequestThrottled",
                         "SlowDown", "PriorRequestNotComplete", "EC2ThrottledException"})


def doing_of(err: BaseException) -> str:
    """What was being done, from the error itself: its operation name when botocore says."""
    operation = getattr(err, "operation_name", "")
    return f"AWS {operation}" if operation else "calling AWS"


def translate(err: Exception, doing: str) -> AgentError:
    """Turn a botocore error into our one-line error with a fix."""
    if isinstance(err, AgentError):
        return err
    if isinstance(err, botocore.exceptions.ClientError):
        code = err.response.get("Error", {}).get("Code", "Unknown")
        message = err.response.get("Error", {}).get("Message", "") or code
        if is_clock_skew(code, message):
            return CloudError(f"{doing}: AWS refused the request's time ({code}: {message})",
                              CLOCK_FIX)
        if code in _ACCESS:
            return CloudError(f"{doing}: access denied ({code})",
                              "use credentials allowed to call this API (see README 'IAM')")
        if code == "ClusterNotFoundException":
            return CloudError(f"{doing}: cluster not found",
                              "create it with `anywhere-agent registrar ensure` or fix --cluster")
        if code in _THROTTLING:
            return TransientCloudError(f"{doing}: throttled by AWS after retries",
                                       "retry later or lower the rollout's batch size")
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        if status >= 500:
            return TransientCloudError(f"{doing}: AWS answered {status} {code}: {message}",
                                       "retry later; if it lasts, check the AWS Health "
                                       "Dashboard for the region")
        return CloudError(f"{doing}: {code}: {message}", "see the AWS error above")
    if isinstance(err, (botocore.exceptions.EndpointConnectionError,
                        botocore.exceptions.ConnectTimeoutError,
                        botocore.exceptions.ProxyConnectionError)):
        url = getattr(err, "kwargs", {}).get("endpoint_url", "the endpoint")
        return NetworkError(f"{doing}: cannot reach {url}",
                            "check network, proxy and endpoint settings (anywhere-agent preflight)")
    if isinstance(err, botocore.exceptions.ReadTimeoutError):
        return NetworkError(f"{doing}: the endpoint did not answer in time",
                            "check the network and proxy (anywhere-agent preflight)")
    if isinstance(err, botocore.exceptions.NoCredentialsError):
        return CloudError(f"{doing}: no AWS credentials found",
                          "configure credentials (AWS_PROFILE, ~/.aws/credentials or a role)")
    if isinstance(err, botocore.exceptions.ProfileNotFound):
        return CloudError(f"{doing}: {err}",
                          "name a profile from ~/.aws/config in AWS_PROFILE, or unset it")
    if isinstance(err, botocore.exceptions.BotoCoreError):
        return CloudError(f"{doing}: {err}", "see the error above")
    raise err


def is_transient(err: BaseException) -> bool:
    """AWS said "not now" (throttling, a 5xx): worth another round within a poll's bound."""
    if isinstance(err, TransientCloudError):
        return True
    if isinstance(err, botocore.exceptions.ClientError):
        return isinstance(translate(err, ""), TransientCloudError)
    return False


@contextmanager
def aws_errors(doing: str) -> Iterator[None]:
    try:
        yield
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
        raise translate(err, doing) from None


def error_code(err: BaseException) -> str:
    if isinstance(err, botocore.exceptions.ClientError):
        return str(err.response.get("Error", {}).get("Code", ""))
    return ""
