"""Proving the join polls on through throttling and 5xx answers, within the join bound."""

from __future__ import annotations

import io
from typing import Any

import botocore.exceptions

from anywhere_agent.install.apply import Progress, apply


def aws_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "lab"},
         "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeContainerInstances")


def test_a_throttled_then_5xx_describe_is_retried_and_the_join_is_verified(node: Any) -> None:
    _, make_ctx, backend = node
    answers = [aws_error("ThrottlingException", 400), aws_error("ServerException", 503)]
    real = backend.describe_container_instances

    def flaky(**kw: Any) -> Any:
        if answers:
            raise answers.pop(0)
        return real(**kw)

    backend.describe_container_instances = flaky
    outcome = apply(make_ctx(), Progress(io.StringIO(), tty=False))
    assert answers == []
    assert outcome.report["cloud_verified"] is True
    assert not any("could not verify" in n for n in outcome.notes)


def test_access_denied_still_ends_verification_at_once_with_a_note(node: Any) -> None:
    _, make_ctx, backend = node
    calls = []

    def denied(**kw: Any) -> Any:
        calls.append(kw)
        raise aws_error("AccessDeniedException", 400)

    backend.describe_container_instances = denied
    outcome = apply(make_ctx(), Progress(io.StringIO(), tty=False))
    assert len(calls) == 1 and outcome.report["cloud_verified"] is False
    assert any("could not verify ACTIVE/agentConnected (ClientError)" in n
               for n in outcome.notes)
