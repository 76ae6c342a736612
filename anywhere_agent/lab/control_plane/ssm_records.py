"""SSM's records (activations, instances, role keys); how DescribeInstanceInformation shows them."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

from anywhere_agent.lab.control_plane.wire import AwsError, Json

_INSTANCE_FILTERS = frozenset(
    {
        "InstanceIds",
        "PingStatus",
        "ActivationIds",
        "ResourceType",
        "AgentVersion",
        "IamRole",
        "PlatformTypes",
        "tag-key",
    }
)


@dataclass
class Activation:
    activation_id: str
    code: str
    region: str
    iam_role: str
    registration_limit: int
    expiration: float
    created: float
    default_instance_name: str = ""
    description: str = ""
    tags: list[Json] = field(default_factory=list)
    registrations: int = 0


@dataclass
class ManagedInstance:
    instance_id: str
    region: str
    activation_id: str
    iam_role: str
    registered: float
    name: str = ""
    tags: list[Json] = field(default_factory=list)
    last_ping: Optional[float] = None
    agent_name: str = ""
    agent_version: str = ""
    computer_name: str = ""
    ip_address: str = ""
    platform_type: str = "Linux"
    platform_name: str = ""
    platform_version: str = ""
    fingerprint: str = ""
    deny_tokens: bool = False
    public_key: str = field(default="", repr=False)  # verifies RequestManagedInstanceRoleToken


@dataclass(frozen=True)
class RoleCredentials:
    instance_id: str
    access_key: str
    expires: float
    # Kept so the control plane can verify signatures and act as the role (iam.py).
    secret: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    iam_role: str = ""


def new_instance_id() -> str:
    return "mi-" + secrets.token_hex(9)[:17]


def filter_instances(
    found: list[ManagedInstance],
    key: str,
    values: Iterable[Any],
    ping_status: Callable[[ManagedInstance], str],
) -> list[ManagedInstance]:
    """DescribeInstanceInformation's filter `key` (Filters or the legacy list) over `found`."""
    wanted = {str(v) for v in values}
    if not wanted:
        raise AwsError("InvalidInstanceInformationFilterValue", f"No values for {key}")
    if key.startswith("tag:"):
        tag = key[4:]
        return [
            i
            for i in found
            if any(t.get("Key") == tag and t.get("Value") in wanted for t in i.tags)
        ]
    if key not in _INSTANCE_FILTERS:
        raise AwsError("InvalidFilterKey", f"The specified key isn't valid: {key}")
    if key == "InstanceIds":
        bad = [v for v in wanted if not v.startswith(("mi-", "i-"))]
        if bad:
            raise AwsError(
                "InvalidInstanceInformationFilterValue",
                f"Invalid instance ids: {', '.join(sorted(bad))}",
            )
    getters: dict[str, Callable[[ManagedInstance], set[str]]] = {
        "InstanceIds": lambda i: {i.instance_id},
        "PingStatus": lambda i: {ping_status(i)},
        "ActivationIds": lambda i: {i.activation_id},
        "ResourceType": lambda i: {"ManagedInstance"},
        "AgentVersion": lambda i: {i.agent_version},
        "IamRole": lambda i: {i.iam_role},
        "PlatformTypes": lambda i: {i.platform_type},
        "tag-key": lambda i: {str(t.get("Key")) for t in i.tags},
    }
    getter = getters[key]
    return [i for i in found if getter(i) & wanted]


def describe(instance: ManagedInstance, ping_status: str) -> Json:
    """One InstanceInformation entry as DescribeInstanceInformation shows it."""
    described: Json = {
        "InstanceId": instance.instance_id,
        "PingStatus": ping_status,
        "AgentVersion": instance.agent_version,
        "IsLatestVersion": False,
        "PlatformType": instance.platform_type,
        "PlatformName": instance.platform_name,
        "PlatformVersion": instance.platform_version,
        "ActivationId": instance.activation_id,
        "IamRole": instance.iam_role,
        "RegistrationDate": instance.registered,
        "ResourceType": "ManagedInstance",
        "Name": instance.name,
        "IPAddress": instance.ip_address,
        "ComputerName": instance.computer_name,
        "SourceId": instance.instance_id,
        "SourceType": "AWS::SSM::ManagedInstance",
    }
    if instance.last_ping is not None:
        described["LastPingDateTime"] = instance.last_ping
    return described
