"""The control plane's front door for rights: authenticate every signed call (principals.py),
then authorize it against the caller's IAM policies."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.principals import (
    AuthenticationError,
    Principal,
    Principals,
    aws_error,
)
from anywhere_agent.lab.control_plane.ssm import SsmAnywhere
from anywhere_agent.lab.control_plane.wire import AwsCall, AwsError, Clock

# The one call AWS takes unsigned: the SSM agent's registration (the activation code is
# the credential).
ANONYMOUS = frozenset({("ssm", "RegisterManagedInstance")})
# The one call signed with a managed instance's registration key instead of an access key.
INSTANCE_SIGNED = frozenset({("ssm", "RequestManagedInstanceRoleToken")})


class Guard:
    """Authenticates a call and says which AWS error, if any, answers it instead."""

    def __init__(self, ssm: SsmAnywhere, clock: Clock) -> None:
        self.principals = Principals(ssm, clock)

    def check(self, call: AwsCall, environ: Mapping[str, Any], body: bytes) -> Optional[AwsError]:
        """None when the call may proceed; otherwise the error to answer with."""
        try:
            self.authenticate(call, sigv4.Request.from_environ(environ, body))
        except (AuthenticationError, sigv4.SignatureError) as error:
            return aws_error(error, call.protocol)
        return None

    def authenticate(self, call: AwsCall, request: sigv4.Request) -> Optional[Principal]:
        """The verified caller (None for the anonymous registration call); raises
        AuthenticationError / sigv4.SignatureError as AWS would refuse the request."""
        principal = self.principals.authenticate(request, call.service)
        key = (call.service, call.operation)
        if principal is None:
            if key in ANONYMOUS:
                return None
            message = (
                "Request is missing Authentication Token"
                if call.protocol == "query"
                else "Missing Authentication Token"
            )
            raise AuthenticationError("missing", message)
        if (principal.kind == "managed-instance") != (key in INSTANCE_SIGNED):
            # A registration key signs only the token request, and only it signs that.
            raise AuthenticationError(
                "unknown_key", "The security token included in the request is invalid."
            )
        return principal
