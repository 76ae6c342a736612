"""Who signed a request: the lab's root key, IAM users' access keys, vended role credentials,
or a managed instance's registration key; each checked the way AWS checks it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.ssm import SsmAnywhere
from anywhere_agent.lab.control_plane.wire import ACCOUNT_ID, AwsError, Clock

# The lab account's root key: for bootstrapping (creating the IAM users that tests and
# operators then use) and for `make demo`. Like an account's root user it may do anything.
# Documented in docs/ARCHITECTURE.md; never accepted outside the lab.
ROOT_ACCESS_KEY_ID = "lab"
ROOT_SECRET_ACCESS_KEY = "lab"  # noqa: S105 - a documented lab-only key

# The name each service signs with (its SigV4 scope), by the service name calls carry.
SIGNING_NAMES = {"cloudwatch": "monitoring"}

_INVALID_TOKEN = "The security token included in the request is invalid."  # noqa: S105
_EXPIRED_TOKEN = "The security token included in the request is expired"  # noqa: S105
# (code for JSON protocols, code for query protocols, HTTP status for query): AWS's own.
_CODES: Mapping[str, tuple[str, str, int]] = {
    "missing": ("MissingAuthenticationTokenException", "MissingAuthenticationToken", 403),
    "incomplete": ("IncompleteSignatureException", "IncompleteSignature", 400),
    "mismatch": ("InvalidSignatureException", "SignatureDoesNotMatch", 403),
    "expired": ("InvalidSignatureException", "SignatureDoesNotMatch", 403),
    "not_yet": ("InvalidSignatureException", "SignatureDoesNotMatch", 403),
    "unknown_key": ("UnrecognizedClientException", "InvalidClientTokenId", 403),
    "expired_token": ("ExpiredTokenException", "ExpiredToken", 403),
}


@dataclass(frozen=True)
class Principal:
    """An authenticated caller, as IAM names it."""

    kind: str  # "root" | "user" | "assumed-role" | "managed-instance"
    name: str  # user or role name; the mi- ID of a managed instance
    arn: str
    instance_id: str = ""  # the managed instance behind vended role credentials


class AuthenticationError(Exception):
    """A request refused before authorization; rendered per protocol by aws_error()."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def aws_error(error: AuthenticationError | sigv4.SignatureError, protocol: str) -> AwsError:
    """The error AWS answers with, in the protocol's code and status."""
    json_code, query_code, query_status = _CODES[error.kind]
    if protocol == "query":
        return AwsError(query_code, error.message, query_status)
    return AwsError(json_code, error.message, 400)


class Principals:
    """Resolves and verifies the signer of a request against the lab's key sources."""

    def __init__(self, ssm: SsmAnywhere, clock: Clock) -> None:
        self._ssm = ssm
        self._clock = clock

    def authenticate(
        self, request: sigv4.Request, service: str, now: Optional[float] = None
    ) -> Optional[Principal]:
        """The verified signer of `request`, None when it is unsigned; raises
        AuthenticationError or sigv4.SignatureError when AWS would refuse it."""
        signature = sigv4.parse(request)
        if signature is None:
            return None
        expected = SIGNING_NAMES.get(service, service)
        if service not in ("", "unknown") and signature.service != expected:
            raise sigv4.SignatureError(
                "mismatch", f"Credential should be scoped to correct service: '{expected}'. "
            )
        key = signature.access_key
        if key.startswith("mi-"):
            return self._managed_instance(request, signature, now)
        if key == ROOT_ACCESS_KEY_ID:
            sigv4.verify(request, signature, ROOT_SECRET_ACCESS_KEY, now)
            self._no_token(request)
            return Principal("root", "root", f"arn:aws:iam::{ACCOUNT_ID}:root")
        vended = self._ssm.credentials_for(key)
        if vended is not None:
            sigv4.verify(request, signature, vended.secret, now)
            token = request.headers.get("x-amz-security-token", "")
            if not hmac.compare_digest(token, vended.token):
                raise AuthenticationError("unknown_key", _INVALID_TOKEN)
            if vended.expires <= self._clock.now():
                raise AuthenticationError("expired_token", _EXPIRED_TOKEN)
            role = vended.iam_role.split("/")[-1]
            return Principal(
                "assumed-role",
                role,
                f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{role}/{vended.instance_id}",
                vended.instance_id,
            )
        user = _iam_user_for_key(key)
        if user is None:
            raise AuthenticationError("unknown_key", _INVALID_TOKEN)
        name, arn, secret = user
        sigv4.verify(request, signature, secret, now)
        self._no_token(request)
        return Principal("user", name, arn)

    def _managed_instance(
        self, request: sigv4.Request, signature: sigv4.Signature, now: Optional[float]
    ) -> Principal:
        """RequestManagedInstanceRoleToken: signed with the RSA key registered by the agent."""
        instance = self._ssm.instances.get(signature.access_key)
        arn = (
            f"arn:aws:ssm:{signature.region}:{ACCOUNT_ID}:managed-instance/"
            f"{signature.access_key}"
        )
        principal = Principal("managed-instance", signature.access_key, arn, signature.access_key)
        if instance is None:
            # The operation itself answers InvalidInstanceId, as SSM does for a
            # deregistered instance; a managed instance may call nothing else.
            return principal
        public_key = instance.public_key
        sigv4.verify_with(
            request, signature, lambda text: _rsa_valid(public_key, text, signature.signature), now
        )
        return principal

    @staticmethod
    def _no_token(request: sigv4.Request) -> None:
        # A session token with long-term keys names credentials that do not exist.
        if request.headers.get("x-amz-security-token"):
            raise AuthenticationError("unknown_key", _INVALID_TOKEN)


def _iam_user_for_key(access_key: str) -> Optional[tuple[str, str, str]]:
    """(user name, ARN, secret) of the active moto IAM access key, if there is one."""
    from moto.iam.models import iam_backends

    backend: Any = iam_backends[ACCOUNT_ID]["aws"]
    for user in list(backend.users.values()):
        for key in list(user.access_keys):
            if key.access_key_id == access_key and key.status == "Active":
                return str(user.name), str(user.arn), str(key.secret_access_key)
    return None


def _rsa_valid(public_key_b64: str, message: str, signature_b64: str) -> bool:
    """RSA-PSS/SHA-256 under the registered public key (DER, base64), as the SSM agent signs."""
    try:
        der = base64.b64decode(public_key_b64)
        signature = base64.b64decode(signature_b64)
    except ValueError:
        return False
    if der.startswith(b"LAB-PLACEHOLDER-KEY-"):
        # The SSM double's key pair on hosts without openssl (see doubles/README.md).
        digest = hashlib.sha256(der + message.encode()).digest()
        return hmac.compare_digest(digest, signature)
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    try:
        key = serialization.load_der_public_key(der)
    except ValueError:
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(
            signature,
            message.encode(),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO),
            hashes.SHA256(),
        )
    except InvalidSignature:
        return False
    return True
