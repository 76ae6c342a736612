"""AWS wire details shared by the extension: parsed calls, JSON answers, error shapes, clock."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qs

ACCOUNT_ID = "123456789012"
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

# X-Amz-Target prefix -> service name used for counting, faults and dispatch.
TARGET_SERVICES = {
    "AmazonSSM": "ssm",
    "AmazonEC2ContainerServiceV20141113": "ecs",
    "EC2WindowsMessageDeliveryService": "ec2messages",
}

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")

Json = dict[str, Any]
Response = tuple[int, list[tuple[str, str]], bytes]


class Clock:
    """The lab clock: wall time run `scale` times faster, plus an offset the lab can advance.

    One lab second lasts 1/scale real seconds, so minute-long cadences (SSM pings, ACS
    heartbeats) play out in seconds while every interval keeps its AWS value in lab time.
    Signatures are still checked against the wall clock, as AWS does.
    """

    def __init__(self, source: Callable[[], float] = time.time, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("the time scale must be positive")
        self._source = source
        self._scale = scale
        self._origin = source()
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            real = self._source()
            return real + (real - self._origin) * (self._scale - 1.0) + self._offset

    def wall(self) -> float:
        """The wall clock itself (for what agents compare with their own clock)."""
        return self._source()

    def real_seconds(self, lab_seconds: float) -> float:
        """How long `lab_seconds` of lab time last on the wall clock."""
        return max(0.0, lab_seconds) / self._scale

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._origin = self._source()
            self._offset = 0.0

    @property
    def scale(self) -> float:
        return self._scale

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset


class AwsError(Exception):
    """An error answered in the service's own shape (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class AwsCall:
    """One AWS request as the extension sees it."""

    service: str
    operation: str
    region: str
    protocol: str  # "json" | "query" | "rest"
    access_key: Optional[str]
    body: bytes
    headers: Mapping[str, str] = field(repr=False)
    params: Json = field(default_factory=dict, repr=False)

    @property
    def anonymous(self) -> bool:
        return self.access_key is None


def parse_call(environ: Mapping[str, Any], body: bytes, default_region: str) -> AwsCall:
    """Work out service, operation, region and caller key the way AWS front ends do."""
    auth = str(environ.get("HTTP_AUTHORIZATION", ""))
    match = _CREDENTIAL.search(auth)
    access_key, region, signed_service = (
        (match.group(1), match.group(2), match.group(3)) if match else (None, default_region, "")
    )
    headers = {
        key[5:].replace("_", "-").lower(): str(value)
        for key, value in environ.items()
        if key.startswith("HTTP_")
    }
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target and "." in target:
        prefix, operation = target.split(".", 1)
        service = TARGET_SERVICES.get(prefix, signed_service or prefix.lower())
        try:
            params = json.loads(body) if body.strip() else {}
        except ValueError:
            params = {}
        return AwsCall(
            service,
            operation,
            region,
            "json",
            access_key,
            body,
            headers,
            params if isinstance(params, dict) else {},
        )
    content_type = str(environ.get("CONTENT_TYPE", ""))
    form: dict[str, list[str]] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode("utf-8", "replace"))
    form.update(parse_qs(str(environ.get("QUERY_STRING", ""))))
    if "Action" in form:
        flat = {key: values[0] for key, values in form.items()}
        return AwsCall(
            signed_service or "unknown",
            form["Action"][0],
            region,
            "query",
            access_key,
            body,
            headers,
            flat,
        )
    operation = f"{environ.get('REQUEST_METHOD', 'GET')} {environ.get('PATH_INFO', '/')}"
    return AwsCall(
        signed_service or "unknown", operation, region, "rest", access_key, body, headers
    )


def json_response(payload: Json, status: int = 200) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return status, _headers(JSON_CONTENT_TYPE, body), body


def error_response(call: AwsCall, error: AwsError) -> Response:
    """Render an error the way the service's protocol does, so botocore parses and retries it."""
    if call.protocol == "query":
        kind = "Receiver" if error.status >= 500 else "Sender"
        body = (
            "<ErrorResponse><Error>"
            f"<Type>{kind}</Type><Code>{error.code}</Code>"
            f"<Message>{_xml_escape(error.message)}</Message>"
            f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
        ).encode()
        return error.status, _headers("text/xml", body), body
    # SSM's modelled errors carry "Message", ECS's "message"; botocore reads either.
    key = "Message" if call.service in ("ssm", "ec2messages") else "message"
    body = json.dumps({"__type": error.code, key: error.message}).encode()
    headers = _headers(JSON_CONTENT_TYPE, body)
    headers.append(("x-amzn-ErrorType", error.code))
    return error.status, headers, body


def epoch(value: Any) -> float:
    """A JSON-protocol timestamp (epoch number or ISO 8601 text) as epoch seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    from datetime import datetime

    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise AwsError("ValidationException", f"Invalid timestamp: {value!r}") from exc


def _headers(content_type: str, body: bytes) -> list[tuple[str, str]]:
    return [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("x-amzn-RequestId", str(uuid.uuid4())),
    ]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def page(
    items: list[Any], limit: int, token: Optional[str], bad_token: AwsError
) -> tuple[list[Any], Optional[str]]:
    """One page of items; the token is the offset of the next item (opaque to callers)."""
    start = 0
    if token:
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("lab:"))
        except ValueError:
            raise bad_token from None
        if start < 0 or start > len(items):
            raise bad_token
    end = start + limit
    following = None
    if end < len(items):
        following = base64.urlsafe_b64encode(f"lab:{end}".encode()).decode()
    return items[start:end], following
