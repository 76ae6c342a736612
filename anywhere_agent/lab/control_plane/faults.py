"""Fault injection for AWS calls: throttling, server errors, latency and access denied at a
seeded rate."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Optional

from anywhere_agent.lab.control_plane.wire import AwsError

KINDS = ("throttle", "5xx", "latency", "deny")

# The codes each protocol's real services use, so botocore classifies them as AWS would.
_THROTTLE_CODES = {"iam": "Throttling", "sts": "Throttling"}
_SERVER_CODES = {"ssm": "InternalServerError", "ecs": "ServerException", "iam": "ServiceFailure"}
# A caller whose policy lacks the action: the query protocols (IAM, STS) say AccessDenied with
# 403; the JSON ones (SSM, ECS, CloudWatch) AccessDeniedException with 400.
_DENY_CODES = {"iam": ("AccessDenied", 403), "sts": ("AccessDenied", 403)}


@dataclass(frozen=True)
class FaultRule:
    """One fault: for calls matching service/operation ("*" = any), with probability rate."""

    kind: str
    service: str = "*"
    operation: str = "*"
    rate: float = 1.0
    status: int = 500
    latency_ms: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError(f"fault rate must be within 0..1, not {self.rate}")
        if self.kind == "5xx" and self.status not in (500, 502, 503, 504):
            raise ValueError(f"5xx status must be 500, 502, 503 or 504, not {self.status}")

    def matches(self, service: str, operation: str) -> bool:
        return self.service in ("*", service) and self.operation in ("*", operation)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultRule:
        return cls(
            kind=str(data["kind"]),
            service=str(data.get("service", "*")),
            operation=str(data.get("operation", "*")),
            rate=float(data.get("rate", 1.0)),
            status=int(data.get("status", 500)),
            latency_ms=int(data.get("latency_ms", 0)),
        )


class FaultInjector:
    """Decides, with a seeded RNG, which calls get a fault; thread safe."""

    def __init__(self, seed: int = 0) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[FaultRule, ...] = ()
        self._seed = seed
        self._random = random.Random(seed)  # noqa: S311 - reproducible chaos, not crypto

    def configure(self, rules: list[FaultRule], seed: Optional[int] = None) -> None:
        with self._lock:
            self._rules = tuple(rules)
            if seed is not None:
                self._seed = seed
            self._random = random.Random(self._seed)  # noqa: S311

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"seed": self._seed, "rules": [r.to_json() for r in self._rules]}

    def decide(self, service: str, operation: str) -> tuple[float, Optional[AwsError]]:
        """Seconds of latency to add and the error to answer with, if any."""
        delay, error = 0.0, None
        with self._lock:
            for rule in self._rules:
                if not rule.matches(service, operation) or self._random.random() >= rule.rate:
                    continue
                if rule.kind == "latency":
                    delay += rule.latency_ms / 1000.0
                elif error is None:
                    error = _error(rule, service)
        return delay, error


def _error(rule: FaultRule, service: str) -> AwsError:
    if rule.kind == "throttle":
        return AwsError(_THROTTLE_CODES.get(service, "ThrottlingException"), "Rate exceeded")
    if rule.kind == "deny":
        code, status = _DENY_CODES.get(service, ("AccessDeniedException", 400))
        return AwsError(code, "User is not authorized to perform this operation (lab fault)",
                        status)
    if rule.status == 503:
        return AwsError("ServiceUnavailable", "Service is unavailable (lab fault)", 503)
    code = _SERVER_CODES.get(service, "InternalFailure")
    return AwsError(code, "An internal error occurred (lab fault)", rule.status)
