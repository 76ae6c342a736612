"""SigV4 verification: the verifier on its own, then the control plane refusing what AWS refuses,
in each protocol's code and shape."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import botocore.auth
import botocore.exceptions
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.principals import ROOT_ACCESS_KEY_ID, ROOT_SECRET_ACCESS_KEY
from anywhere_agent.lab.control_plane.server import ControlPlane

from .conftest import Agent

URL = "http://127.0.0.1:4566/"
HEADERS = {"Content-Type": "application/x-amz-json-1.1",
           "X-Amz-Target": "AmazonSSM.DescribeActivations"}


def _botocore_signed(secret: str = "s3cr3t", body: bytes = b"{}", url: str = URL,
                     service: str = "ssm") -> sigv4.Request:
    """A request signed by botocore, as the control plane receives it."""
    request = AWSRequest("POST", url, headers=dict(HEADERS), data=body)
    SigV4Auth(Credentials("AKIAEXAMPLE", secret), service, "us-east-1").add_auth(request)
    parts = url.split("/", 3)
    path, _, query = ("/" + (parts[3] if len(parts) > 3 else "")).partition("?")
    headers = {k.lower(): v for k, v in request.headers.items()}
    headers["host"] = parts[2]
    return sigv4.Request("POST", path, query, headers, body)


def _refusal(excinfo: pytest.ExceptionInfo[botocore.exceptions.ClientError]) -> tuple[str, str]:
    error = excinfo.value.response["Error"]
    return str(error["Code"]), str(error["Message"])


def test_a_botocore_signature_verifies_against_its_secret() -> None:
    request = _botocore_signed()
    signature = sigv4.parse(request)
    assert signature is not None and signature.access_key == "AKIAEXAMPLE"
    sigv4.verify(request, signature, "s3cr3t")


def test_a_query_string_and_an_odd_path_are_canonicalised_like_botocore() -> None:
    request = _botocore_signed(url=URL + "ws?seqNum=1&agentVersion=1.105.1&b=a%20b&a=",
                               service="ecs")
    signature = sigv4.parse(request)
    assert signature is not None
    sigv4.verify(request, signature, "s3cr3t")


@pytest.mark.parametrize("change", ["secret", "body", "header"])
def test_any_change_to_what_was_signed_breaks_the_signature(change: str) -> None:
    request = _botocore_signed()
    signature = sigv4.parse(request)
    assert signature is not None
    secret = "other" if change == "secret" else "s3cr3t"
    if change == "body":
        request = sigv4.Request(request.method, request.path, request.query, request.headers,
                                b'{"x":1}')
    if change == "header":
        request = sigv4.Request(request.method, request.path, request.query,
                                {**request.headers, "x-amz-target": "AmazonSSM.DeleteActivation"},
                                request.body)
    with pytest.raises(sigv4.SignatureError) as excinfo:
        sigv4.verify(request, signature, secret)
    assert excinfo.value.kind == "mismatch"
    assert excinfo.value.message.startswith("The request signature we calculated does not match")


def test_a_request_signed_10_minutes_ago_or_ahead_is_outside_the_window() -> None:
    request = _botocore_signed()
    signature = sigv4.parse(request)
    assert signature is not None
    with pytest.raises(sigv4.SignatureError) as late:
        sigv4.verify(request, signature, "s3cr3t", now=time.time() + 600)
    assert late.value.kind == "expired"
    assert re.fullmatch(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
                        r"\(\d{8}T\d{6}Z - 5 min\.\)", late.value.message)
    with pytest.raises(sigv4.SignatureError) as early:
        sigv4.verify(request, signature, "s3cr3t", now=time.time() - 600)
    assert early.value.kind == "not_yet"
    assert "is still later than" in early.value.message
    sigv4.verify(request, signature, "s3cr3t", now=time.time() + 240)


def test_an_unsigned_request_has_no_signature_and_a_bad_header_is_incomplete() -> None:
    assert sigv4.parse(sigv4.Request("POST", "/", "", {}, b"")) is None
    with pytest.raises(sigv4.SignatureError) as excinfo:
        sigv4.parse(sigv4.Request("POST", "/", "", {
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIA/20261130/us-east-1/ssm/aws4_request",
            "x-amz-date": "20261130T000000Z"}, b""))
    assert excinfo.value.kind == "incomplete"


# -- through the control plane ----------------------------------------------------------


@pytest.fixture
def ten_minutes_ago(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore signs with a clock 10 minutes slow (the host's clock is off)."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime",
                        lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
                        - dt.timedelta(minutes=10))


def test_the_plane_refuses_a_request_signed_10_minutes_off_in_each_protocol(
        plane: ControlPlane, agent: Agent, ten_minutes_ago: None) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as json_call:
        agent.client("ssm").describe_activations()
    code, message = _refusal(json_call)
    assert code == "InvalidSignatureException"
    assert re.fullmatch(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z "
                        r"\(\d{8}T\d{6}Z - 5 min\.\)", message)
    assert json_call.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(botocore.exceptions.ClientError) as query_call:
        agent.client("iam").list_roles()
    assert _refusal(query_call)[0] == "SignatureDoesNotMatch"
    assert _refusal(query_call)[1].startswith("Signature expired: ")
    assert query_call.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_the_lab_clock_does_not_move_the_signature_window(plane: ControlPlane,
                                                          agent: Agent) -> None:
    plane.clock.advance(3600)
    agent.client("ssm").describe_activations()


def test_unknown_keys_and_wrong_secrets_are_refused_as_aws_does(plane: ControlPlane,
                                                                agent: Agent) -> None:
    with pytest.raises(botocore.exceptions.ClientError) as unknown:
        agent.client("ecs", key="AKIAUNKNOWN000000000", secret="x").list_clusters()
    assert _refusal(unknown) == ("UnrecognizedClientException",
                                 "The security token included in the request is invalid.")
    with pytest.raises(botocore.exceptions.ClientError) as unknown_query:
        agent.client("iam", key="AKIAUNKNOWN000000000", secret="x").list_roles()
    assert _refusal(unknown_query)[0] == "InvalidClientTokenId"
    with pytest.raises(botocore.exceptions.ClientError) as wrong:
        agent.client("ssm", secret="not-the-root-secret").describe_activations()
    assert _refusal(wrong)[0] == "InvalidSignatureException"


def test_an_iam_users_access_key_is_accepted_until_it_is_deleted(plane: ControlPlane,
                                                                  agent: Agent) -> None:
    iam: Any = agent.client("iam")
    iam.create_user(UserName="ops")
    key = iam.create_access_key(UserName="ops")["AccessKey"]
    ops = agent.client("sts", key=key["AccessKeyId"], secret=key["SecretAccessKey"])
    assert ops.get_caller_identity()["Arn"].endswith(":user/ops")
    iam.delete_access_key(UserName="ops", AccessKeyId=key["AccessKeyId"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        ops.get_caller_identity()
    assert _refusal(excinfo)[0] == "InvalidClientTokenId"


def test_vended_credentials_need_their_session_token(plane: ControlPlane, agent: Agent,
                                                     host: Any) -> None:
    creds = host.credentials
    tokenless = agent.client("ssm", key=creds["AccessKeyId"], secret=creds["SecretAccessKey"])
    with pytest.raises(botocore.exceptions.ClientError) as excinfo:
        tokenless.describe_activations()
    assert _refusal(excinfo)[0] == "UnrecognizedClientException"


def test_an_unsigned_call_is_refused_but_registration_is_anonymous(plane: ControlPlane,
                                                                    agent: Agent) -> None:
    answer = agent.call("AmazonSSM.DescribeActivations", {})
    assert (answer.status, answer.error) == (400, "MissingAuthenticationTokenException")
    registration = agent.call("AmazonSSM.RegisterManagedInstance", {
        "ActivationCode": "x", "ActivationId": "y", "Fingerprint": "f", "PublicKey": "k",
        "PublicKeyType": "Rsa"})
    assert registration.error == "InvalidActivation"


def test_a_role_token_signed_with_another_instances_key_is_refused(
        plane: ControlPlane, agent: Agent, host: Any, ssm: Any, role: str) -> None:
    activation_id, code = agent.create_activation(ssm, role)
    other = agent.register(activation_id, code).body["InstanceId"]
    agent.instance_keys[host.instance_id] = agent.instance_keys[other]
    answer = agent.role_token(host.instance_id)
    assert (answer.status, answer.error) == (400, "InvalidSignatureException")
    assert json.dumps(answer.body).count("does not match") == 1



def test_a_regional_endpoint_refuses_a_call_signed_for_another_region(
        plane: ControlPlane) -> None:
    """AWS's eu-west-1 endpoint answers only eu-west-1-scoped signatures; the lab's regional
    port does the same (its main port serves every region, by the signature's scope)."""
    import boto3
    from botocore.config import Config

    def ssm(region: str) -> Any:
        return boto3.client("ssm", endpoint_url=plane.url_for("eu-west-1"), region_name=region,
                            aws_access_key_id=ROOT_ACCESS_KEY_ID,
                            aws_secret_access_key=ROOT_SECRET_ACCESS_KEY,
                            config=Config(retries={"mode": "standard", "max_attempts": 1}))

    ssm("eu-west-1").describe_activations()
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        ssm("us-east-1").describe_activations()
    assert refused.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert "scoped to a valid region, not 'us-east-1'" in str(refused.value)
