"""AWS Signature Version 4 verification: parse, canonicalise and check a signed request."""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, quote

ALGORITHM = "AWS4-HMAC-SHA256"
# AWS accepts a request whose signing time is within 5 minutes of its own clock.
WINDOW_SECONDS = 300.0
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_FIELDS = re.compile(r"(\w+)=([^,\s]*)")

MISMATCH_MESSAGE = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


class SignatureError(Exception):
    """A request AWS would refuse before looking at its caller's rights.

    kind is one of: missing (no signature at all), incomplete (a malformed one),
    mismatch (wrong signature or scope), expired / not_yet (outside the time window).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Request:
    """What a signature covers: method, raw path and query, headers (lower-case), body."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes

    @classmethod
    def from_environ(cls, environ: Mapping[str, Any], body: bytes) -> Request:
        """From a WSGI environ; the raw (still percent-encoded) path when the server kept it."""
        headers = {
            key[5:].replace("_", "-").lower(): str(value)
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
            if environ.get(key):
                headers[name] = str(environ[key])
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
        path = raw.split("?", 1)[0] if raw else quote(str(environ.get("PATH_INFO") or "/"))
        return cls(
            method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
            path=path or "/",
            query=str(environ.get("QUERY_STRING", "")),
            headers=headers,
            body=body,
        )


@dataclass(frozen=True)
class Signature:
    """The parsed signature of a request: who signed, for which scope, over what."""

    access_key: str
    day: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    presigned: bool

    @property
    def scope(self) -> str:
        return f"{self.day}/{self.region}/{self.service}/aws4_request"


def parse(request: Request) -> Optional[Signature]:
    """The request's SigV4 signature (header or presigned query), or None when unsigned."""
    auth = request.headers.get("authorization", "")
    query = dict(parse_qsl(request.query, keep_blank_values=True))
    if auth:
        algorithm, _, rest = auth.strip().partition(" ")
        if algorithm != ALGORITHM:
            raise SignatureError("incomplete", f"Unsupported signing algorithm: {algorithm}")
        fields = dict(_FIELDS.findall(rest))
        missing = [k for k in ("Credential", "SignedHeaders", "Signature") if not fields.get(k)]
        if missing:
            raise SignatureError(
                "incomplete",
                f"Authorization header requires '{missing[0]}' parameter. "
                f"Authorization={auth.split('Signature=')[0]}",
            )
        amz_date = request.headers.get("x-amz-date", "")
        if not amz_date:
            raise SignatureError(
                "incomplete",
                "Authorization header requires existence of either a 'X-Amz-Date' or a "
                "'Date' header.",
            )
        credential, signed, signature = fields["Credential"], fields["SignedHeaders"], fields[
            "Signature"
        ]
        presigned = False
    elif "X-Amz-Signature" in query:
        credential = query.get("X-Amz-Credential", "")
        signed = query.get("X-Amz-SignedHeaders", "")
        signature = query["X-Amz-Signature"]
        amz_date = query.get("X-Amz-Date", "")
        if query.get("X-Amz-Algorithm") != ALGORITHM or not (credential and signed and amz_date):
            raise SignatureError("incomplete", "Presigned request is missing SigV4 parameters")
        presigned = True
    else:
        return None
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise SignatureError(
            "incomplete",
            f"Credential should be scoped to a valid region, service and aws4_request: "
            f"'{credential}'",
        )
    return Signature(
        access_key=parts[0],
        day=parts[1],
        region=parts[2],
        service=parts[3],
        signed_headers=tuple(signed.split(";")),
        signature=signature,
        amz_date=amz_date,
        presigned=presigned,
    )


def canonical_request(request: Request, signature: Signature) -> str:
    """The canonical request of SigV4 (non-S3 services: the path is normalised and
    encoded once more, as botocore and the Go SDKs do)."""
    path = posixpath.normpath(request.path) if request.path not in ("", "/") else "/"
    if request.path.endswith("/") and path != "/":
        path += "/"
    pairs = [
        (quote(key, safe="-_.~"), quote(value, safe="-_.~"))
        for key, value in parse_qsl(request.query, keep_blank_values=True)
        if not (signature.presigned and key == "X-Amz-Signature")
    ]
    query = "&".join(f"{key}={value}" for key, value in sorted(pairs))
    headers = "".join(
        f"{name}:{' '.join(request.headers.get(name, '').split())}\n"
        for name in signature.signed_headers
    )
    payload = request.headers.get("x-amz-content-sha256") or hashlib.sha256(
        request.body
    ).hexdigest()
    return "\n".join(
        [
            request.method,
            quote(path, safe="/~"),
            query,
            headers,
            ";".join(signature.signed_headers),
            payload,
        ]
    )


def string_to_sign(request: Request, signature: Signature) -> str:
    digest = hashlib.sha256(canonical_request(request, signature).encode()).hexdigest()
    return "\n".join([ALGORITHM, signature.amz_date, signature.scope, digest])


def hmac_signature(secret: str, signature: Signature, to_sign: str) -> str:
    key = ("AWS4" + secret).encode()
    for part in (signature.day, signature.region, signature.service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def check_time(signature: Signature, now: Optional[float] = None) -> None:
    """Refuse a signing time more than 5 minutes from `now` (the wall clock), in AWS's words."""
    current = time.time() if now is None else now
    try:
        signed_at = (
            datetime.strptime(signature.amz_date, _AMZ_DATE).replace(tzinfo=timezone.utc)
        ).timestamp()
    except ValueError:
        raise SignatureError(
            "incomplete", f"Date must be in ISO-8601 'basic format'. Got '{signature.amz_date}'."
        ) from None
    if signature.amz_date[:8] != signature.day:
        raise SignatureError(
            "mismatch",
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date "
            f"from HTTP: '{signature.day}' != '{signature.amz_date[:8]}', from "
            f"'{signature.amz_date}'.",
        )
    if signed_at < current - WINDOW_SECONDS:
        raise SignatureError(
            "expired",
            f"Signature expired: {signature.amz_date} is now earlier than "
            f"{_stamp(current - WINDOW_SECONDS)} ({_stamp(current)} - 5 min.)",
        )
    if signed_at > current + WINDOW_SECONDS:
        raise SignatureError(
            "not_yet",
            f"Signature not yet current: {signature.amz_date} is still later than "
            f"{_stamp(current + WINDOW_SECONDS)} ({_stamp(current)} + 5 min.)",
        )


def check_headers(request: Request, signature: Signature) -> None:
    """Host and (when present) X-Amz-Date must be signed, as AWS requires."""
    signed = set(signature.signed_headers)
    if "host" not in signed:
        raise SignatureError(
            "incomplete",
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.",
        )
    if not signature.presigned and "x-amz-date" in request.headers and "x-amz-date" not in signed:
        raise SignatureError(
            "incomplete", "'X-Amz-Date' must be a 'SignedHeader' in the AWS Authorization."
        )


def verify(
    request: Request,
    signature: Signature,
    secret: str,
    now: Optional[float] = None,
) -> None:
    """Check time window, required headers and the HMAC under `secret`; raise SignatureError."""
    check_time(signature, now)
    check_headers(request, signature)
    expected = hmac_signature(secret, signature, string_to_sign(request, signature))
    if not hmac.compare_digest(expected, signature.signature):
        raise SignatureError("mismatch", MISMATCH_MESSAGE)


def verify_with(
    request: Request,
    signature: Signature,
    check: Callable[[str], bool],
    now: Optional[float] = None,
) -> None:
    """Like verify, for signatures that are not an HMAC (the SSM agent's RSA signature):
    `check` gets the string to sign and says whether the signature covers it."""
    check_time(signature, now)
    check_headers(request, signature)
    if not check(string_to_sign(request, signature)):
        raise SignatureError("mismatch", MISMATCH_MESSAGE)


def _stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime(_AMZ_DATE)
