"""IAM users for the lab's central callers, made the way an operator makes them: with the
lab's root key, holding the policy files we publish under iam/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

from anywhere_agent.lab.control_plane.principals import (
    ROOT_ACCESS_KEY_ID,
    ROOT_SECRET_ACCESS_KEY,
)

# The published policies, one per actor (README "IAM" is checked against these files).
POLICY_DIR = Path(__file__).resolve().parents[2] / "iam"


@dataclass(frozen=True)
class AccessKey:
    user: str
    access_key_id: str
    secret_access_key: str

    def environment(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key_id,
                "AWS_SECRET_ACCESS_KEY": self.secret_access_key}


def root_client(endpoint: str, service: str, region: str = "us-east-1") -> Any:
    """A client holding the lab account's root key (bootstrap only)."""
    session: Any = boto3.session.Session(aws_access_key_id=ROOT_ACCESS_KEY_ID,
                                         aws_secret_access_key=ROOT_SECRET_ACCESS_KEY,
                                         region_name=region)
    return session.client(service, endpoint_url=endpoint)


def policy_document(name: str) -> dict[str, Any]:
    """A published policy by file stem (e.g. "registrar" -> iam/registrar.json)."""
    document: dict[str, Any] = json.loads((POLICY_DIR / f"{name}.json").read_text())
    return document


def create_user(endpoint: str, user: str, policies: dict[str, dict[str, Any]],
                region: str = "us-east-1") -> AccessKey:
    """An IAM user holding exactly `policies` (inline, name -> document) and a fresh key."""
    iam = root_client(endpoint, "iam", region)
    try:
        iam.create_user(UserName=user)
    except iam.exceptions.EntityAlreadyExistsException:
        for name in iam.list_user_policies(UserName=user)["PolicyNames"]:
            iam.delete_user_policy(UserName=user, PolicyName=name)
    for name, document in policies.items():
        iam.put_user_policy(UserName=user, PolicyName=name, PolicyDocument=json.dumps(document))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return AccessKey(user, key["AccessKeyId"], key["SecretAccessKey"])


def create_operator(endpoint: str, actor: str, region: str = "us-east-1") -> AccessKey:
    """An IAM user named after the actor, holding only that actor's published policy."""
    return create_user(endpoint, actor, {actor: policy_document(actor)}, region)
