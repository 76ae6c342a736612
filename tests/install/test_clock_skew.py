"""Clock skew is named as such: AWS refusing a request's time is not "access denied"."""

from __future__ import annotations

import itertools
from typing import Any

import botocore.exceptions
import pytest

from anywhere_agent.aws.clients import translate
from anywhere_agent.aws.skew import CLOCK_FIX, is_clock_skew
from anywhere_agent.errors import CloudError, ExitCode
from anywhere_agent.install.steps import CredentialsStep

EXPIRED = ("Signature expired: 20261130T010000Z is now earlier than 20261130T011000Z "
           "(20261130T011500Z - 5 min.)")


def client_error(code: str, message: str) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": message}}, "DescribeClusters")


@pytest.mark.parametrize(("code", "message"), [
    ("InvalidSignatureException", EXPIRED),
    ("InvalidSignatureException", "Signature not yet current: 20261130T013000Z is still later "
                                  "than 20261130T012000Z (20261130T011500Z + 5 min.)"),
    ("SignatureDoesNotMatch", EXPIRED),
    ("RequestTimeTooSkewed", "The difference between the request time and the current time "
                             "is too large."),
])
def test_a_refused_request_time_is_named_clock_skew_with_the_sync_fix(
        code: str, message: str) -> None:
    error = translate(client_error(code, message), "checking the cluster")
    assert isinstance(error, CloudError) and error.exit_code == ExitCode.CLOUD
    assert "refused the request's time" in error.message and code in error.message
    assert error.fix == CLOCK_FIX and "timedatectl set-ntp true" in error.fix


def test_a_wrong_signature_is_still_access_denied_not_skew() -> None:
    message = "The request signature we calculated does not match the signature you provided."
    assert not is_clock_skew("InvalidSignatureException", message)
    error = translate(client_error("InvalidSignatureException", message), "checking the cluster")
    assert "access denied" in error.message


def test_install_names_clock_skew_when_the_ssm_agent_is_refused_for_its_time(node: Any) -> None:
    system, make_ctx, _ = node
    ctx = make_ctx()
    log = system.root / "var/log/amazon/ssm/amazon-ssm-agent.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-11-30 01:00:00.0000 INFO credentialRefresher has started\n"
                   "2026-11-30 01:00:00.1000 ERROR Retrieve credentials produced error: "
                   f"InvalidSignatureException: {EXPIRED}\n")
    ticks = itertools.count(0, 30)
    ctx.clock = lambda: float(next(ticks))
    step = CredentialsStep()
    with pytest.raises(CloudError) as raised:
        step.apply(ctx, step.check(ctx))  # type: ignore[arg-type]
    assert "refused its request's time" in raised.value.message
    assert "Signature expired" in raised.value.message
    assert raised.value.fix == CLOCK_FIX


def test_install_without_a_skew_in_the_log_keeps_the_plain_timeout(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx()
    ticks = itertools.count(0, 30)
    ctx.clock = lambda: float(next(ticks))
    step = CredentialsStep()
    with pytest.raises(CloudError) as raised:
        step.apply(ctx, step.check(ctx))  # type: ignore[arg-type]
    assert "within 60 s" in raised.value.message
