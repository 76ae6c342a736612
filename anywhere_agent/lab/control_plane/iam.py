"""The control plane's front door for rights: authenticate every signed call (principals.py),
then authorize it against the caller's IAM policies, as IAM's evaluation logic does."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.principals import (
    AuthenticationError,
    Principal,
    Principals,
    aws_error,
)
from anywhere_agent.lab.control_plane.ssm import SsmAnywhere
from anywhere_agent.lab.control_plane.wire import ACCOUNT_ID, AwsCall, AwsError, Clock, Json

# The one call AWS takes unsigned: the SSM agent's registration (the activation code is
# the credential).
ANONYMOUS = frozenset({("ssm", "RegisterManagedInstance")})
# The one call signed with a managed instance's registration key instead of an access key;
# SSM authorizes it by that key alone.
INSTANCE_SIGNED = frozenset({("ssm", "RequestManagedInstanceRoleToken")})
# Calls IAM never denies (sts:GetCallerIdentity needs no permission).
ALWAYS_ALLOWED = frozenset({("sts", "GetCallerIdentity")})
# IAM action prefixes that differ from the SigV4 service name.
_ACTION_PREFIX = {"monitoring": "cloudwatch", "cloudwatch": "cloudwatch"}

Context = Mapping[str, Union[str, Sequence[str]]]


@dataclass(frozen=True)
class Check:
    """One authorization question: may the caller do `action` on `resource`, given `context`?"""

    action: str
    resource: str
    context: Context = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    explicit_deny: bool = False


class Guard:
    """Authenticates a call, authorizes it, and says which AWS error answers it instead."""

    def __init__(self, ssm: SsmAnywhere, clock: Clock, enforce: bool = True) -> None:
        self.principals = Principals(ssm, clock)
        self.enforce = enforce  # authorization; authentication always applies

    def check(self, call: AwsCall, environ: Mapping[str, Any], body: bytes) -> Optional[AwsError]:
        """None when the call may proceed; otherwise the error to answer with."""
        try:
            principal = self.authenticate(call, sigv4.Request.from_environ(environ, body))
        except (AuthenticationError, sigv4.SignatureError) as error:
            return aws_error(error, call.protocol)
        if principal is None or not self.enforce:
            return None
        return self.authorize(principal, call)

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

    def authenticate_environ(
        self, environ: Mapping[str, Any], body: bytes, service: str, protocol: str = "json"
    ) -> Principal:
        """For requests outside the JSON/query front door (the ACS/TCS WebSocket upgrade):
        the verified caller, or the AwsError AWS would answer with."""
        try:
            principal = self.principals.authenticate(
                sigv4.Request.from_environ(environ, body), service
            )
        except (AuthenticationError, sigv4.SignatureError) as error:
            raise aws_error(error, protocol) from None
        if principal is None or principal.kind == "managed-instance":
            raise aws_error(AuthenticationError("missing", "Missing Authentication Token"),
                            protocol)
        return principal

    def authorize(self, principal: Principal, call: AwsCall) -> Optional[AwsError]:
        """None when the caller's policies allow every check the call needs; else AccessDenied."""
        if principal.kind in ("root", "managed-instance") or (
            (call.service, call.operation) in ALWAYS_ALLOWED
        ):
            return None
        for check in checks_for(call, principal):
            error = self.authorize_check(principal, check, call.protocol)
            if error is not None:
                return error
        return None

    def authorize_check(
        self, principal: Principal, check: Check, protocol: str = "json"
    ) -> Optional[AwsError]:
        """One check (also for callers outside the front door, such as the ACS socket)."""
        if principal.kind == "root":
            return None
        # aws:ARN, the resource's own ARN: how a policy names "the caller itself" when
        # compared with a session key such as ${ssm:SourceInstanceARN}.
        context = {**principal_context(principal), "aws:ARN": check.resource, **check.context}
        decision = evaluate(policies_of(principal), check.action, check.resource, context)
        if decision.allowed:
            return None
        return denial(principal, check, decision, protocol)


def denial(principal: Principal, check: Check, decision: Decision, protocol: str) -> AwsError:
    """AccessDenied in the protocol's shape, worded as IAM words it."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision.explicit_deny
        else f"because no identity-based policy allows the {check.action} action"
    )
    message = (
        f"User: {principal.arn} is not authorized to perform: {check.action} "
        f"on resource: {check.resource} {why}"
    )
    if protocol == "query":
        return AwsError("AccessDenied", message, 403)
    return AwsError("AccessDeniedException", message, 400)


# -- policy evaluation ---------------------------------------------------------------------


def evaluate(
    policies: Iterable[Json], action: str, resource: str, context: Context
) -> Decision:
    """IAM's identity-policy logic: an explicit Deny wins, then any Allow, else denied."""
    allowed = False
    for policy in policies:
        for statement in _statements(policy):
            if not _applies(statement, action, resource, context):
                continue
            if statement.get("Effect") == "Deny":
                return Decision(False, explicit_deny=True)
            if statement.get("Effect") == "Allow":
                allowed = True
    return Decision(allowed)


def _statements(policy: Json) -> list[Json]:
    statements = policy.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    return [s for s in statements if isinstance(s, dict)]


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [str(value)]


def _applies(statement: Json, action: str, resource: str, context: Context) -> bool:
    if "Action" in statement:
        if not any(_like(p, action, fold=True) for p in _as_list(statement["Action"])):
            return False
    elif "NotAction" in statement:
        if any(_like(p, action, fold=True) for p in _as_list(statement["NotAction"])):
            return False
    else:
        return False
    if "Resource" in statement:
        patterns = [_substitute(p, context) for p in _as_list(statement["Resource"])]
        if not any(p is not None and _like(p, resource) for p in patterns):
            return False
    elif "NotResource" in statement:
        patterns = [_substitute(p, context) for p in _as_list(statement["NotResource"])]
        if any(p is not None and _like(p, resource) for p in patterns):
            return False
    return _conditions_hold(statement.get("Condition") or {}, context)


def _like(pattern: str, value: str, fold: bool = False) -> bool:
    """IAM's wildcard match: * any run of characters, ? one character, nothing else special."""
    return _pattern(pattern, fold).fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)
def _pattern(pattern: str, fold: bool) -> re.Pattern[str]:
    regex = "".join(
        ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern
    )
    return re.compile(regex, re.IGNORECASE | re.DOTALL if fold else re.DOTALL)


_VARIABLE = re.compile(r"\$\{([^}]+)\}")


def _substitute(text: str, context: Context) -> Optional[str]:
    """Policy variables (${aws:username}, ${ssm:SourceInstanceARN}); None when a variable has
    no value in this request, which makes that element match nothing, as in IAM."""
    missing = False

    def value(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        found = _lookup(context, name)
        if not found:
            missing = True
            return ""
        return found[0]

    result = _VARIABLE.sub(value, text)
    return None if missing else result


def _lookup(context: Context, key: str) -> list[str]:
    for name, value in context.items():
        if name.lower() == key.lower():  # condition keys are case-insensitive
            return _as_list(value)
    return []


_OPERATORS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringEqualsIgnoreCase": lambda want, got: want.lower() == got.lower(),
    "StringLike": lambda want, got: _like(want, got),
    "StringNotLike": lambda want, got: not _like(want, got),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": lambda want, got: _like(want, got),
    "ArnNotEquals": lambda want, got: want != got,
    "ArnNotLike": lambda want, got: not _like(want, got),
    "Bool": lambda want, got: want.lower() == got.lower(),
}


def _conditions_hold(conditions: Json, context: Context) -> bool:
    """Every operator block holds; within one, every key; a key holds if any value matches
    (for negated operators: if no value matches). Absent keys fail unless ...IfExists, or
    the operator is negated."""
    for operator, block in conditions.items():
        name = operator
        if_exists = name.endswith("IfExists")
        name = name.removesuffix("IfExists")
        test = _OPERATORS.get(name)
        if test is None or not isinstance(block, dict):
            return False  # an operator the lab does not know never grants anything
        negated = "Not" in name
        for key, wanted in block.items():
            got = _lookup(context, key)
            if not got:
                if if_exists or negated:
                    continue
                return False
            wanted_values = [w for w in (_substitute(v, context) for v in _as_list(wanted))
                             if w is not None]
            if negated:
                if not all(test(w, g) for w in wanted_values for g in got):
                    return False
            elif not any(test(w, g) for w in wanted_values for g in got):
                return False
    return True


# -- whose policies ------------------------------------------------------------------------


def policies_of(principal: Principal) -> list[Json]:
    """The identity policies of a user or of an assumed role: inline and attached."""
    from moto.iam.models import iam_backends

    backend: Any = iam_backends[ACCOUNT_ID]["aws"]
    holder: Any
    if principal.kind == "user":
        holder = backend.users.get(principal.name)
    elif principal.kind == "assumed-role":
        holder = backend.roles.get(_role_id(backend, principal.name))
    else:
        holder = None
    if holder is None:
        return []  # a deleted user or role has no rights left
    documents = [str(doc) for doc in dict(holder.policies).values()]
    for policy in list(dict(holder.managed_policies).values()):
        for version in policy.versions:
            if version.is_default:
                documents.append(str(version.document))
    return [_parse(doc) for doc in documents]


def _role_id(backend: Any, name: str) -> str:
    for role_id, role in list(backend.roles.items()):
        if role.name == name:
            return str(role_id)
    return ""


@functools.lru_cache(maxsize=1024)
def _parse_cached(document: str) -> str:
    from urllib.parse import unquote

    text = document if document.lstrip().startswith("{") else unquote(document)
    return json.dumps(json.loads(text))


def _parse(document: str) -> Json:
    parsed: Json = json.loads(_parse_cached(document))
    return parsed


def principal_context(principal: Principal) -> dict[str, Union[str, list[str]]]:
    """The global condition keys IAM sets for this caller."""
    context: dict[str, Union[str, list[str]]] = {"aws:PrincipalArn": principal.arn}
    if principal.kind == "user":
        context["aws:username"] = principal.name
        context["aws:PrincipalType"] = "User"
    elif principal.kind == "assumed-role":
        context["aws:PrincipalArn"] = f"arn:aws:iam::{ACCOUNT_ID}:role/{principal.name}"
        context["aws:PrincipalType"] = "AssumedRole"
    return context


# -- what each call needs --------------------------------------------------------------------


def checks_for(call: AwsCall, principal: Principal) -> list[Check]:
    """The authorization checks AWS makes for this call (Service Authorization Reference)."""
    prefix = _ACTION_PREFIX.get(call.service, call.service)
    action = f"{prefix}:{call.operation}"
    params = call.params
    region = call.region
    checks = _specific(call, prefix, action, params, region)
    if checks is None:
        checks = [Check(action, f"arn:aws:{prefix}:{region}:{ACCOUNT_ID}:*")]
    return [
        Check(c.action, c.resource, {**c.context, **_instance_context(principal, region)})
        for c in checks
    ]


def _instance_context(principal: Principal, region: str) -> dict[str, str]:
    """ssm:SourceInstanceARN: set by SSM on the credentials it vends to a managed instance."""
    if principal.kind == "assumed-role" and principal.instance_id:
        return {
            "ssm:SourceInstanceARN": (
                f"arn:aws:ssm:{region}:{ACCOUNT_ID}:managed-instance/{principal.instance_id}"
            )
        }
    return {}


def _specific(
    call: AwsCall, prefix: str, action: str, params: Json, region: str
) -> Optional[list[Check]]:
    op = call.operation
    if prefix == "ssm":
        if op == "CreateActivation":
            role = str(params.get("IamRole", ""))
            return [
                Check(action, f"arn:aws:ssm:{region}:{ACCOUNT_ID}:*"),
                Check(
                    "iam:PassRole",
                    _role_arn(role),
                    {"iam:PassedToService": "ssm.amazonaws.com"},
                ),
            ]
        if op in ("DeregisterManagedInstance", "UpdateInstanceInformation"):
            instance = str(params.get("InstanceId", ""))
            return [Check(action, f"arn:aws:ssm:{region}:{ACCOUNT_ID}:managed-instance/{instance}")]
        return None
    if prefix == "ecs":
        return _ecs_checks(op, action, params, region)
    if prefix == "cloudwatch" and op == "PutMetricData":
        return [
            Check(action, "*", {"cloudwatch:namespace": str(params.get("Namespace", ""))})
        ]
    if prefix == "iam":
        return _iam_checks(op, action, params)
    return None


def session_check(operation: str, region: str, cluster: str, container_instance: str,
                  principal: Principal) -> Check:
    """The check AWS makes when the ECS agent opens ACS (`ecs:Poll`) or TCS
    (`ecs:StartTelemetrySession`): the container instance as resource, `ecs:cluster` as
    condition key (Service Authorization Reference), plus the vended credentials' context."""
    cluster_arn = _cluster_arn(region, cluster)
    instance = container_instance
    if not instance.startswith("arn:"):
        instance = (f"arn:aws:ecs:{region}:{ACCOUNT_ID}:container-instance/"
                    f"{cluster_arn.rsplit('/', 1)[-1]}/{instance}")
    return Check(f"ecs:{operation}", instance,
                 {"ecs:cluster": cluster_arn, **_instance_context(principal, region)})


def _cluster_arn(region: str, reference: Any) -> str:
    text = str(reference or "default")
    if text.startswith("arn:"):
        return text
    return f"arn:aws:ecs:{region}:{ACCOUNT_ID}:cluster/{text}"


def _ecs_checks(op: str, action: str, params: Json, region: str) -> Optional[list[Check]]:
    cluster = _cluster_arn(region, params.get("cluster"))
    cluster_name = cluster.rsplit("/", 1)[-1]

    def instance_arn(reference: Any) -> str:
        text = str(reference)
        if text.startswith("arn:"):
            return text
        return f"arn:aws:ecs:{region}:{ACCOUNT_ID}:container-instance/{cluster_name}/{text}"

    on_cluster = {"ecs:cluster": cluster}
    if op in ("RegisterContainerInstance", "DeregisterContainerInstance",
              "ListContainerInstances"):
        checks = [Check(action, cluster)]
        if op == "RegisterContainerInstance" and params.get("tags"):
            checks.append(Check("ecs:TagResource", cluster,
                                {"ecs:CreateAction": "RegisterContainerInstance"}))
        return checks
    if op in ("DescribeContainerInstances", "UpdateContainerInstancesState"):
        return [Check(action, instance_arn(r), on_cluster)
                for r in params.get("containerInstances") or []] or [Check(action, cluster)]
    if op == "PutAttributes":
        targets = [a.get("targetId") for a in params.get("attributes") or []
                   if isinstance(a, dict)]
        return [Check(action, instance_arn(t) if t else cluster, on_cluster)
                for t in targets] or [Check(action, cluster)]
    if op == "DescribeClusters":
        return [Check(action, _cluster_arn(region, c))
                for c in params.get("clusters") or ["default"]]
    if op in ("CreateCluster", "DeleteCluster"):
        return [Check(action, _cluster_arn(region, params.get("clusterName")
                                                   or params.get("cluster")))]
    return None


def _role_arn(name: str) -> str:
    if name.startswith("arn:"):
        return name
    from moto.iam.models import iam_backends

    backend: Any = iam_backends[ACCOUNT_ID]["aws"]
    for role in list(backend.roles.values()):
        if role.name == name:
            return str(role.arn)
    return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"


def _iam_checks(op: str, action: str, params: Json) -> Optional[list[Check]]:
    if "RoleName" in params:
        context = {"iam:PolicyARN": str(params["PolicyArn"])} if "PolicyArn" in params else {}
        return [Check(action, _role_arn(str(params["RoleName"])), context)]
    if "UserName" in params:
        return [Check(action, f"arn:aws:iam::{ACCOUNT_ID}:user/{params['UserName']}")]
    if "PolicyArn" in params:
        return [Check(action, str(params["PolicyArn"]))]
    return [Check(action, "*")]
