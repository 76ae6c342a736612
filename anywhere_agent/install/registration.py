"""Why `amazon-ssm-agent -register` failed, read from the agent's own output, with a fix each.

The agent prints (seelog, to stdout and its log) one error that spans lines, as aws-sdk-go
formats it, for example:

    ERROR Registration failed due to error registering the instance with AWS SSM.
    ActivationExpired: Activation has expired
        status code: 400, request id: ...

Its last line alone ("status code: 400, ...") is the same for every cause, so the whole text
is read. The codes are the ones botocore's and aws-sdk-go's SSM models list for
RegisterManagedInstance (InvalidActivation, ActivationExpired, RegistrationLimitExceeded,
InternalServerError, TooManyUpdates, InvalidPublicKey, InstanceAlreadyRegistered) plus the
generic AWS throttling/signature codes and aws-sdk-go's RequestError for network failures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from anywhere_agent.aws.skew import SKEW_CODES
from anywhere_agent.errors import ActivationError, AgentError, CloudError, NetworkError

# aws-sdk-go's "Code: message": the code is one CamelCase word ("ActivationExpired").
_AWS_ERROR = re.compile(r"\b(?P<code>Throttling|[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+): "
                        r"(?P<message>[^\n]*)")
_STATUS = re.compile(r"status code: (?P<status>\d{3})")

THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyUpdates",
                            "RequestLimitExceeded", "TooManyRequestsException",
                            "RequestThrottled", "RequestThrottledException"})


@dataclass(frozen=True)
class RegisterFailure:
    """One failed `-register`: its AWS code (or "" when none was printed) and what it means."""

    cause: str  # expired | limit | invalid | wrong_region | throttled | server | clock |
    #             network | unknown
    code: str
    message: str
    status: int

    @property
    def retryable(self) -> bool:
        return self.cause in ("throttled", "server")

    def error(self, region: str, activation_id: str, attempts: int = 1) -> AgentError:
        """The user-facing error: one line that names the cause and its own fix."""
        said = f"{self.code}: {self.message}" if self.code else self.message
        head = f"SSM registration failed ({self.cause.replace('_', ' ')}): {said}"
        if self.cause == "expired":
            return ActivationError(head, f"activation {activation_id} has expired; create a new "
                                   "activation (`anywhere-agent registrar activate`) and re-run "
                                   "install with its ID and code")
        if self.cause == "limit":
            return ActivationError(head, f"activation {activation_id} has no registrations "
                                   "left; create one with a higher --count "
                                   "(`anywhere-agent registrar activate`)")
        if self.cause == "wrong_region":
            return CloudError(head, f"activation {activation_id} was not found in {region}; "
                              "set region (--region) to the region it was created in")
        if self.cause == "invalid":
            return ActivationError(head, "the activation code does not match the ID, or the "
                                   "activation was deleted: copy both again from `anywhere-agent "
                                   f"registrar activate` (created in {region})")
        if self.cause == "throttled":
            return CloudError(f"{head} (still throttled after {attempts} attempts)",
                              "SSM is rate-limiting this account: wait a minute and re-run "
                              "install; stagger large rollouts (fewer hosts at once)")
        if self.cause == "server":
            return CloudError(f"{head} (after {attempts} attempts)",
                              "SSM had a server-side error; re-run install in a few minutes")
        if self.cause == "clock":
            return CloudError(head, "this host's clock is off; sync it (`timedatectl set-ntp "
                              "true` or `chronyc makestep`) and re-run install")
        if self.cause == "network":
            return NetworkError(head, f"the SSM endpoint for {region} could not be reached: "
                                "check the region's spelling, endpoints.ssm and the proxy "
                                "(`anywhere-agent preflight`)")
        return ActivationError(head, "see /var/log/amazon/ssm/amazon-ssm-agent.log; check the "
                               f"activation ID/code and that it was created in {region}")


def classify(output: str, code: str = "") -> RegisterFailure:
    """Read the agent's output (stdout and stderr, the code already masked) into a cause."""
    text = output.replace(code, "***") if code else output
    status_m = _STATUS.search(text)
    status = int(status_m["status"]) if status_m else 0
    start = text.find("Registration failed")
    found = _AWS_ERROR.search(text, max(start, 0))
    aws_code = found["code"] if found else ""
    message = found["message"].strip() if found else _last_line(text)
    low = text.lower()
    if aws_code == "ActivationExpired" or ("expired" in low and "activation" in low):
        cause = "expired"
    elif aws_code == "RegistrationLimitExceeded" or "registration limit" in low:
        cause = "limit"
    elif aws_code in THROTTLE_CODES or "rate exceeded" in low:
        cause = "throttled"
    elif aws_code in SKEW_CODES or "clock skew" in low or "signature expired" in low:
        cause = "clock"
    elif aws_code == "InvalidActivation" and "region" in message.lower():
        cause = "wrong_region"
    elif aws_code in ("InvalidActivation", "InvalidActivationId", "ValidationException"):
        cause = "invalid"
    elif aws_code in ("InternalServerError", "InternalFailure", "ServiceUnavailable") \
            or status >= 500:
        cause = "server"
    elif aws_code == "RequestError" or "send request failed" in low or "no such host" in low:
        cause = "network"
    else:
        cause = "unknown"
    return RegisterFailure(cause, aws_code, message, status)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "the agent printed nothing"
