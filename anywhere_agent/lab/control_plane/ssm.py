"""SSM hybrid activations and managed instances: the API- and agent-side operations moto lacks."""

from __future__ import annotations

import secrets
import string
import threading
import uuid
from collections.abc import Callable
from typing import Any, Optional

from anywhere_agent.lab.control_plane.ssm_records import (
    Activation,
    ManagedInstance,
    RoleCredentials,
    describe,
    filter_instances,
    new_instance_id,
)
from anywhere_agent.lab.control_plane.wire import (
    ACCOUNT_ID,
    AwsCall,
    AwsError,
    Clock,
    Json,
    epoch,
    page,
)

DAY = 86400.0
# PingStatus turns ConnectionLost after this much lab time without UpdateInstanceInformation.
# The real agent (agent/health/healthcheck.go) pings at start, again after a random 0-300 s,
# then every HealthFrequencyMinutes (default 5): its longest gap is 300 s. 900 s = three
# intervals, so one or two lost or retried pings never flap a healthy host (AWS publishes no
# figure). A host whose HealthFrequencyMinutes is raised above 15 would flap in the lab.
PING_TIMEOUT = 900.0
# ec2messages GetMessages holds an empty poll open this long (lab time). The agent's HTTP
# timeout for it is Mds.StopTimeoutMillis = 20 s, so the service must answer before that.
LONG_POLL_SECONDS = 15.0
_CODE_ALPHABET = string.ascii_letters + string.digits + "+/"
_KEY_ALPHABET = string.ascii_uppercase + string.digits
_AGENT_OPS = frozenset(
    {
        "RegisterManagedInstance",
        "RequestManagedInstanceRoleToken",
        "UpdateInstanceInformation",
        "ListInstanceAssociations",
    }
)


class SsmAnywhere:
    """State and handlers for activations, managed instances and their role credentials."""

    OPERATIONS = _AGENT_OPS | {
        "CreateActivation",
        "DescribeActivations",
        "DeleteActivation",
        "DescribeInstanceInformation",
        "DeregisterManagedInstance",
    }

    def __init__(
        self,
        clock: Clock,
        ping_timeout: float,
        credential_lifetime: float,
        role_exists: Callable[[str], bool],
    ) -> None:
        self.clock = clock
        self.ping_timeout = ping_timeout
        self.credential_lifetime = credential_lifetime
        self._role_exists = role_exists
        self._lock = threading.RLock()
        self.activations: dict[str, Activation] = {}
        self.instances: dict[str, ManagedInstance] = {}
        self._keys: dict[str, RoleCredentials] = {}
        self.long_poll_seconds = LONG_POLL_SECONDS
        self._wake_polls = threading.Event()

    def reset(self) -> None:
        # Wake held polls so a reset or stop never waits for them.
        self._wake_polls.set()
        self._wake_polls = threading.Event()
        with self._lock:
            self.activations.clear()
            self.instances.clear()
            self._keys.clear()

    def handle(self, call: AwsCall) -> Json:
        handler = getattr(self, "_op_" + call.operation)
        with self._lock:
            result: Json = handler(call.region, call.params, call)
            return result

    # -- what other parts of the lab ask -------------------------------------------------

    def credentials_for(self, access_key: str) -> Optional[RoleCredentials]:
        with self._lock:
            return self._keys.get(access_key)

    def ping_status(self, instance: ManagedInstance) -> str:
        if instance.last_ping is None or self.clock.now() - instance.last_ping > self.ping_timeout:
            return "ConnectionLost"
        return "Online"

    def expire_activation(self, activation_id: str) -> None:
        with self._lock:
            self._activation(activation_id, "InvalidActivationId").expiration = self.clock.now()

    def deny_tokens(self, instance_id: str, deny: bool) -> None:
        with self._lock:
            self._instance(instance_id).deny_tokens = deny

    def seed(
        self, region: str, count: int, online: bool, activation_id: str = "", prefix: str = "seed"
    ) -> list[str]:
        """Add registered, heartbeating instances directly (no API calls, no counters)."""
        now = self.clock.now()
        ids = []
        with self._lock:
            for index in range(count):
                instance = ManagedInstance(
                    instance_id=new_instance_id(),
                    region=region,
                    activation_id=activation_id,
                    iam_role="ecsAnywhereRole",
                    registered=now,
                    name=f"{prefix}-{index}",
                    last_ping=now if online else now - self.ping_timeout - 1,
                    agent_name="amazon-ssm-agent",
                    agent_version="3.3.1611.0",
                    computer_name=f"{prefix}-{index}",
                    ip_address=f"10.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255}",
                    platform_name="Debian GNU/Linux",
                    platform_version="12",
                )
                self.instances[instance.instance_id] = instance
                ids.append(instance.instance_id)
        return ids

    def summary(self) -> Json:
        with self._lock:
            statuses: dict[str, int] = {}
            for instance in self.instances.values():
                status = self.ping_status(instance)
                statuses[status] = statuses.get(status, 0) + 1
            return {
                "activations": len(self.activations),
                "managed_instances": len(self.instances),
                "ping_status": statuses,
                "role_credentials": len(self._keys),
            }

    # -- API side ------------------------------------------------------------------------

    def _op_CreateActivation(self, region: str, params: Json, call: AwsCall) -> Json:
        role = params.get("IamRole")
        if not isinstance(role, str) or not role:
            raise AwsError(
                "ValidationException",
                "1 validation error detected: Value null at "
                "'iamRole' failed to satisfy constraint: Member must not be null",
            )
        limit = params.get("RegistrationLimit", 1)
        if not isinstance(limit, int) or not 1 <= limit <= 1000:
            raise AwsError(
                "ValidationException",
                f"1 validation error detected: Value '{limit}'"
                " at 'registrationLimit' failed to satisfy constraint: Member must "
                "have value between 1 and 1000",
            )
        now = self.clock.now()
        # The operator's ExpirationDate is a wall-clock instant; what is left of it counts in
        # lab time, so under a time scale a 2-hour activation lasts 2 lab hours.
        remaining = (epoch(params["ExpirationDate"]) - self.clock.wall()
                     if "ExpirationDate" in params else DAY)
        expiration = now + remaining
        if remaining <= 0 or remaining > 30 * DAY:
            raise AwsError(
                "InvalidParameters",
                "ExpirationDate must be in the future and at most 30 days from now",
            )
        if not self._role_exists(role):
            raise AwsError(
                "ValidationException",
                "Nonexistent role or missing ssm service "
                f"principal in trust policy: arn:aws:iam::{ACCOUNT_ID}:role/{role}",
            )
        activation = Activation(
            activation_id=str(uuid.uuid4()),
            code="".join(secrets.choice(_CODE_ALPHABET) for _ in range(20)),
            region=region,
            iam_role=role,
            registration_limit=limit,
            expiration=expiration,
            created=now,
            default_instance_name=str(params.get("DefaultInstanceName", "")),
            description=str(params.get("Description", "")),
            tags=list(params.get("Tags", [])),
        )
        self.activations[activation.activation_id] = activation
        return {"ActivationId": activation.activation_id, "ActivationCode": activation.code}

    def _op_DescribeActivations(self, region: str, params: Json, call: AwsCall) -> Json:
        limit = _max_results(params, 1, 50, 50)
        found = [a for a in self.activations.values() if a.region == region]
        for spec in params.get("Filters") or []:
            key, values = spec.get("FilterKey"), set(spec.get("FilterValues") or [])
            attribute = {
                "ActivationIds": "activation_id",
                "DefaultInstanceName": "default_instance_name",
                "IamRole": "iam_role",
            }.get(str(key))
            if attribute is None:
                raise AwsError("InvalidFilter", f"Invalid filter key: {key}")
            found = [a for a in found if getattr(a, attribute) in values]
        chunk, following = page(
            found,
            limit,
            params.get("NextToken"),
            AwsError("InvalidNextToken", "The specified token isn't valid."),
        )
        now = self.clock.now()
        result: Json = {
            "ActivationList": [
                {
                    "ActivationId": a.activation_id,
                    "Description": a.description,
                    "DefaultInstanceName": a.default_instance_name,
                    "IamRole": a.iam_role,
                    "RegistrationLimit": a.registration_limit,
                    "RegistrationsCount": a.registrations,
                    "ExpirationDate": a.expiration,
                    "Expired": now >= a.expiration,
                    "CreatedDate": a.created,
                    "Tags": a.tags,
                }
                for a in chunk
            ]
        }
        if following:
            result["NextToken"] = following
        return result

    def _op_DeleteActivation(self, region: str, params: Json, call: AwsCall) -> Json:
        activation = self._activation(str(params.get("ActivationId", "")), "InvalidActivationId")
        if activation.region != region:
            raise AwsError("InvalidActivationId", "The activation ID isn't valid.")
        del self.activations[activation.activation_id]
        return {}

    def _op_DescribeInstanceInformation(self, region: str, params: Json, call: AwsCall) -> Json:
        limit = _max_results(params, 5, 50, 50)
        if params.get("Filters") and params.get("InstanceInformationFilterList"):
            raise AwsError(
                "ValidationException",
                "Filters and InstanceInformationFilterList can't be used in the same request",
            )
        found = [i for i in self.instances.values() if i.region == region]
        legacy = [
            {"Key": f.get("key"), "Values": f.get("valueSet")}
            for f in params.get("InstanceInformationFilterList") or []
        ]
        for spec in legacy or params.get("Filters") or []:
            found = filter_instances(
                found, str(spec.get("Key")), spec.get("Values") or [], self.ping_status
            )
        chunk, following = page(
            found,
            limit,
            params.get("NextToken"),
            AwsError("InvalidNextToken", "The specified token isn't valid."),
        )
        described = [describe(i, self.ping_status(i)) for i in chunk]
        result: Json = {"InstanceInformationList": described}
        if following:
            result["NextToken"] = following
        return result

    def _op_DeregisterManagedInstance(self, region: str, params: Json, call: AwsCall) -> Json:
        instance = self._instance(str(params.get("InstanceId", "")))
        if instance.region != region:
            raise AwsError("InvalidInstanceId", "Instance Id is not valid")
        del self.instances[instance.instance_id]
        return {}

    # -- agent side ----------------------------------------------------------------------

    def _op_RegisterManagedInstance(self, region: str, params: Json, call: AwsCall) -> Json:
        for key in ("ActivationCode", "ActivationId", "PublicKey", "PublicKeyType", "Fingerprint"):
            if not params.get(key):
                raise AwsError("ValidationException", f"{key} is required")
        activation = self.activations.get(str(params["ActivationId"]))
        if activation is None or activation.region != region:
            raise AwsError(
                "InvalidActivation", "Activation ID is not valid or does not exist in this region"
            )
        if not secrets.compare_digest(activation.code, str(params["ActivationCode"])):
            raise AwsError("InvalidActivation", "Activation code does not match")
        if self.clock.now() >= activation.expiration:
            raise AwsError("ActivationExpired", "Activation has expired")
        if activation.registrations >= activation.registration_limit:
            # The code SSM's API model lists for RegisterManagedInstance (botocore, aws-sdk-go).
            raise AwsError("RegistrationLimitExceeded", "Activation registration limit reached")
        activation.registrations += 1
        instance = ManagedInstance(
            instance_id=new_instance_id(),
            region=region,
            activation_id=activation.activation_id,
            iam_role=activation.iam_role,
            registered=self.clock.now(),
            name=activation.default_instance_name,
            tags=list(activation.tags),
            fingerprint=str(params["Fingerprint"]),
            public_key=str(params["PublicKey"]),
        )
        self.instances[instance.instance_id] = instance
        return {"InstanceId": instance.instance_id}

    def _op_RequestManagedInstanceRoleToken(self, region: str, params: Json, call: AwsCall) -> Json:
        if not params.get("Fingerprint"):
            raise AwsError("ValidationException", "Fingerprint is required")
        instance = self._instance(call.access_key or "")
        if instance.deny_tokens:
            raise AwsError(
                "AccessDeniedException",
                f"Role credentials are denied for {instance.instance_id} (lab fault)",
            )
        access_key = "ASIA" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(16))
        expires = self.clock.now() + self.credential_lifetime
        secret, token = secrets.token_urlsafe(30)[:40], secrets.token_urlsafe(192)
        self._keys[access_key] = RoleCredentials(
            instance.instance_id, access_key, expires, secret, token, instance.iam_role
        )
        return {
            "AccessKeyId": access_key,
            "SecretAccessKey": secret,
            "SessionToken": token,
            # The agent schedules its rotation on its own (wall) clock: the same lifetime,
            # lasting 1/scale as long in real time.
            "TokenExpirationDate": int(
                self.clock.wall() + self.clock.real_seconds(self.credential_lifetime)
            ),
            "UpdateKeyPair": False,
        }

    def _op_UpdateInstanceInformation(self, region: str, params: Json, call: AwsCall) -> Json:
        instance = self._instance(str(params.get("InstanceId", "")))
        instance.last_ping = self.clock.now()
        for attribute, key in (
            ("agent_name", "AgentName"),
            ("agent_version", "AgentVersion"),
            ("computer_name", "ComputerName"),
            ("ip_address", "IPAddress"),
            ("platform_type", "PlatformType"),
            ("platform_name", "PlatformName"),
            ("platform_version", "PlatformVersion"),
        ):
            if params.get(key):
                setattr(instance, attribute, str(params[key]))
        return {}

    def _op_ListInstanceAssociations(self, region: str, params: Json, call: AwsCall) -> Json:
        self._instance(str(params.get("InstanceId", "")))
        return {"Associations": []}

    def get_messages(self, params: Json) -> Json:
        """ec2messages GetMessages: a long poll that ends empty (the lab sends no commands)."""
        destination = str(params.get("Destination", ""))
        self._wake_polls.wait(self.clock.real_seconds(self.long_poll_seconds))
        return {
            "Destination": destination,
            "Messages": [],
            "MessagesRequestId": str(params.get("MessagesRequestId") or uuid.uuid4()),
        }

    # -- helpers -------------------------------------------------------------------------

    def _activation(self, activation_id: str, code: str) -> Activation:
        activation = self.activations.get(activation_id)
        if activation is None:
            raise AwsError(code, f"Activation ID {activation_id} is not valid")
        return activation

    def _instance(self, instance_id: str) -> ManagedInstance:
        instance = self.instances.get(instance_id)
        if instance is None:
            raise AwsError("InvalidInstanceId", f"Not existing InstanceId {instance_id}")
        return instance


def _max_results(params: Json, low: int, high: int, default: int) -> int:
    value: Any = params.get("MaxResults", default)
    if not isinstance(value, int) or not low <= value <= high:
        raise AwsError(
            "ValidationException",
            f"1 validation error detected: Value '{value}' at "
            f"'maxResults' failed to satisfy constraint: Member must have value "
            f"between {low} and {high}",
        )
    return value
