"""Fixtures: one control plane per test session, reset before every test, and an agent-like
caller that makes AWS calls the way the real SSM and ECS agents make them."""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.principals import (
    ROOT_ACCESS_KEY_ID,
    ROOT_SECRET_ACCESS_KEY,
)
from anywhere_agent.lab.control_plane.server import ControlPlane

REGION = "us-east-1"
TRUST_SSM = json.dumps({
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
})
HOST_MANAGED_POLICIES = ("AmazonSSMManagedInstanceCore",
                         "service-role/AmazonEC2ContainerServiceforEC2Role")
AGENT_ATTRIBUTES = [
    {"name": "ecs.capability.external"},
    {"name": "ecs.os-type", "value": "linux"},
    {"name": "ecs.os-family", "value": "DEBIAN_12"},
    {"name": "ecs.os-type-detailed", "value": "debian_12"},
    {"name": "ecs.cpu-architecture", "value": "x86_64"},
    {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.44"},
]
TOTAL_RESOURCES = [
    {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
    {"name": "MEMORY", "type": "INTEGER", "integerValue": 3904},
    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ["22", "51678", "51679"]},
    {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]

    @property
    def error(self) -> str:
        return str(self.body.get("__type", ""))


@dataclass(frozen=True)
class Agent:
    """Calls made like the real agents: raw AWS JSON 1.1, anonymous or chunked where they are."""

    plane: ControlPlane
    attributes: tuple[dict[str, Any], ...] = tuple(AGENT_ATTRIBUTES)
    # What the agents hold: access key -> (secret, session token); mi- ID -> RSA key.
    secrets: dict[str, tuple[str, Optional[str]]] = field(default_factory=lambda: {
        ROOT_ACCESS_KEY_ID: (ROOT_SECRET_ACCESS_KEY, None)})
    instance_keys: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str, key: str = ROOT_ACCESS_KEY_ID,
               secret: str = ROOT_SECRET_ACCESS_KEY,
               token: Optional[str] = None, retries: int = 1) -> Any:
        return boto3.client(
            service, endpoint_url=self.plane.url, region_name=REGION, aws_access_key_id=key,
            aws_secret_access_key=secret, aws_session_token=token,
            config=Config(retries={"mode": "standard", "max_attempts": retries}),
        )

    def call(self, target: str, body: dict[str, Any], credential: Optional[str] = None,
             chunked: bool = False) -> Answer:
        url = urlsplit(self.plane.url)
        headers = {"Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": target}
        data = json.dumps(body).encode()
        if credential is not None:
            service = "ec2messages" if target.startswith("EC2Windows") else "ssm"
            headers = self._signed(headers, data, credential, service)
        connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
        try:
            if chunked:
                # No Content-Length at all: http.client sends Transfer-Encoding: chunked.
                connection.request("POST", "/", body=iter([data]), headers=headers,
                                   encode_chunked=True)
            else:
                connection.request("POST", "/", body=data, headers=headers)
            response = connection.getresponse()
            raw = response.read()
            return Answer(response.status, json.loads(raw) if raw else {})
        finally:
            connection.close()

    def _signed(self, headers: dict[str, str], data: bytes, credential: str,
                service: str) -> dict[str, str]:
        """Sign as the agents do: SigV4 with a secret, or the registration key for an mi- ID."""
        if credential in self.instance_keys:
            when = datetime.now(timezone.utc)
            headers = {**headers, "Host": str(urlsplit(self.plane.url).netloc),
                       "X-Amz-Date": when.strftime("%Y%m%dT%H%M%SZ")}
            signature = sigv4.Signature(
                credential, when.strftime("%Y%m%d"), REGION, service,
                ("content-type", "host", "x-amz-date", "x-amz-target"), "",
                headers["X-Amz-Date"], False)
            request = sigv4.Request("POST", "/", "", {k.lower(): v for k, v in headers.items()},
                                    data)
            signed = self.instance_keys[credential].sign(
                sigv4.string_to_sign(request, signature).encode(),
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256())
            headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={credential}/{signature.scope}, "
                f"SignedHeaders={';'.join(signature.signed_headers)}, "
                f"Signature={base64.b64encode(signed).decode()}")
            return headers
        secret, token = self.secrets.get(credential, ("not-a-known-secret", None))
        request = AWSRequest("POST", self.plane.url + "/", headers=headers, data=data)
        SigV4Auth(Credentials(credential, secret, token), service, REGION).add_auth(request)
        return dict(request.headers.items())

    def create_activation(self, ssm: Any, role: str, limit: int = 1,
                          **extra: Any) -> tuple[str, str]:
        answer = ssm.create_activation(IamRole=role, RegistrationLimit=limit, **extra)
        return answer["ActivationId"], answer["ActivationCode"]

    def register(self, activation_id: str, code: str) -> Answer:
        key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        public = key.public_key().public_bytes(serialization.Encoding.DER,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        answer = self.call("AmazonSSM.RegisterManagedInstance", {
            "ActivationCode": code, "ActivationId": activation_id,
            "Fingerprint": str(uuid.uuid4()),
            "PublicKey": base64.b64encode(public).decode(),
            "PublicKeyType": "Rsa"})
        if answer.status == 200:
            self.instance_keys[answer.body["InstanceId"]] = key
        return answer

    def role_token(self, instance_id: str) -> Answer:
        answer = self.call("AmazonSSM.RequestManagedInstanceRoleToken",
                           {"Fingerprint": str(uuid.uuid4())}, credential=instance_id,
                           chunked=True)
        if answer.status == 200:
            self.secrets[answer.body["AccessKeyId"]] = (answer.body["SecretAccessKey"],
                                                       answer.body["SessionToken"])
        return answer

    def heartbeat(self, instance_id: str, access_key: str) -> Answer:
        return self.call("AmazonSSM.UpdateInstanceInformation", {
            "InstanceId": instance_id, "AgentName": "amazon-ssm-agent",
            "AgentVersion": "3.3.1611.0", "AgentStatus": "Active", "ComputerName": "n1",
            "IPAddress": "10.213.7.11", "PlatformName": "Debian GNU/Linux",
            "PlatformType": "Linux", "PlatformVersion": "12"}, credential=access_key)

    def register_container_instance(self, agent_ecs: Any, cluster: str,
                                    **extra: Any) -> dict[str, Any]:
        """RegisterContainerInstance with the body the ECS agent sends for an external host."""
        answer = agent_ecs.register_container_instance(
            cluster=cluster, instanceIdentityDocument="", instanceIdentityDocumentSignature="",
            attributes=AGENT_ATTRIBUTES, totalResources=TOTAL_RESOURCES, **extra)
        return dict(answer["containerInstance"])


@dataclass(frozen=True)
class Host:
    """A registered host holding role credentials."""

    agent: Agent
    instance_id: str
    credentials: dict[str, Any]

    def acs(self, arn: str, cluster: str, kind: str = "acs", region: str = REGION,
            endpoint: Optional[str] = None) -> Any:
        """Dial ACS (or TCS) for `arn` with this host's keys, as the ECS agent double does."""
        from anywhere_agent.lab.doubles import ecs_agent

        cfg = ecs_agent.Config(env={
            "AWS_DEFAULT_REGION": region, "ECS_CLUSTER": cluster,
            "AWS_ACCESS_KEY_ID": self.credentials["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["SecretAccessKey"],
            "AWS_SESSION_TOKEN": self.credentials["SessionToken"]})
        query = ecs_agent.session_query(kind, cfg, arn)
        return ecs_agent.ws_connect(cfg, ecs_agent.Credentials(cfg),
                                    endpoint or self.agent.plane.url, query)

    def ecs(self) -> Any:
        """An ECS client holding the role credentials, like the ECS agent on that host."""
        return self.agent.client("ecs", key=self.credentials["AccessKeyId"],
                                 secret=self.credentials["SecretAccessKey"],
                                 token=self.credentials["SessionToken"])


@pytest.fixture(scope="session")
def _session_plane(shared_control_plane: ControlPlane) -> ControlPlane:
    return shared_control_plane


@pytest.fixture
def plane(_session_plane: ControlPlane) -> ControlPlane:
    _session_plane.reset()
    _session_plane.ssm.ping_timeout = 60
    _session_plane.sessions.heartbeat_seconds = 30
    _session_plane.ssm.long_poll_seconds = 0
    _session_plane.ssm.credential_lifetime = 1800
    return _session_plane


@pytest.fixture
def agent(plane: ControlPlane) -> Agent:
    return Agent(plane)


@pytest.fixture
def admin(plane: ControlPlane) -> LabAdmin:
    return LabAdmin(plane.url)


@pytest.fixture
def ssm(agent: Agent) -> Any:
    return agent.client("ssm")


@pytest.fixture
def ecs(agent: Agent) -> Any:
    return agent.client("ecs")


@pytest.fixture
def role(agent: Agent) -> str:
    """The hosts' role as `registrar ensure` builds it: its two AWS managed policies."""
    iam = agent.client("iam")
    iam.create_role(RoleName="ecsAnywhereRole", AssumeRolePolicyDocument=TRUST_SSM)
    for policy in HOST_MANAGED_POLICIES:
        iam.attach_role_policy(RoleName="ecsAnywhereRole",
                               PolicyArn=f"arn:aws:iam::aws:policy/{policy}")
    return "ecsAnywhereRole"


@pytest.fixture
def host(agent: Agent, ssm: Any, role: str) -> Host:
    """A host that registered with an activation and fetched role credentials."""
    activation_id, code = agent.create_activation(ssm, role)
    instance_id = agent.register(activation_id, code).body["InstanceId"]
    return Host(agent, instance_id, agent.role_token(instance_id).body)
