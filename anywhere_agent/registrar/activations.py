"""SSM activations sized to a rollout: create (split past 1,000), hand codes over safely, revoke."""

from __future__ import annotations

import getpass
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import botocore.exceptions

from anywhere_agent.aws.clients import Clients, aws_errors, error_code, translate
from anywhere_agent.errors import AgentError, HostIOError, PartialFailure, UsageError
from anywhere_agent.registrar.ensure import DEFAULT_ROLE
from anywhere_agent.secret import RedactingFilter, Secret

LOG = logging.getLogger(__name__)

REGISTRATION_LIMIT = 1000  # SSM's cap per activation
TAG_ROLLOUT = "anywhere-agent:rollout"
TAG_CREATED_BY = "anywhere-agent:created-by"
OWN_TAGS = (TAG_ROLLOUT, TAG_CREATED_BY)  # on every activation, besides the operator's
PAGE = 50  # DescribeActivations MaxResults maximum


# Errors that would fail every remaining item the same way: stop at the first, one line.
_FATAL = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
          "UnrecognizedClientException", "InvalidClientTokenId", "ExpiredTokenException",
          "SignatureDoesNotMatch", "InvalidSignatureException", "MissingAuthenticationToken"})


def fails_everything(err: Exception) -> bool:
    return error_code(err) in _FATAL or not isinstance(err, botocore.exceptions.ClientError)


@dataclass(frozen=True)
class Activation:
    activation_id: str
    code: Secret
    registration_limit: int
    expires_at: datetime
    rollout: str
    iam_role: str
    default_instance_name: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self, reveal: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "activation_id": self.activation_id,
            "registration_limit": self.registration_limit,
            "expires_at": self.expires_at.isoformat(),
            "rollout": self.rollout,
            "iam_role": self.iam_role,
            "default_instance_name": self.default_instance_name,
        }
        if reveal:
            d["activation_code"] = self.code.reveal()
        return d


def split_count(count: int) -> list[int]:
    """Registration limits whose sum is `count`, none above SSM's 1,000."""
    full, rest = divmod(count, REGISTRATION_LIMIT)
    return [REGISTRATION_LIMIT] * full + ([rest] if rest else [])


def new_rollout_id(now: datetime) -> str:
    return f"r-{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def caller_identity(clients: Clients) -> str:
    """Who is creating the activations, for the tag; STS if it answers, else the local user."""
    try:
        arn: str = clients.client("sts").get_caller_identity()["Arn"]
        return arn
    except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
        # The tag is informative, never worth failing the rollout over.
        LOG.debug("STS GetCallerIdentity unavailable (%s); tagging with the local user",
                  type(err).__name__)
        try:
            return f"user:{getpass.getuser()}"
        except (KeyError, OSError):
            return "unknown"


class CodeSink:
    """Where the codes go: a 0600 file written atomically, or standard output as JSON.

    Opened before any activation exists so an unwritable path costs nothing in AWS.
    """

    def __init__(self, output: str, stdout: IO[str]) -> None:
        self.output = output
        self._stdout = stdout
        self._tmp: str | None = None
        if output != "-":
            target = Path(output)
            if target.is_dir():
                raise UsageError(f"--output {output} is a directory", "give a file path")
            try:
                # mkstemp creates the file with mode 0600 from the start: no window where
                # another user could open it.
                fd, self._tmp = tempfile.mkstemp(prefix=f".{target.name}.",
                                                 dir=target.parent or ".")
                os.close(fd)
            except OSError as err:
                raise HostIOError(f"cannot write activation file in {target.parent}: "
                                  f"{err.strerror}",
                                  "choose a directory you can write to for --output") from None

    def write(self, activations: Sequence[Activation]) -> None:
        doc = {"activations": [a.to_dict(reveal=True) for a in activations]}
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        if self._tmp is None:
            self._stdout.write(text)
            self._stdout.flush()
            return
        try:
            with open(self._tmp, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(self._tmp, self.output)
            self._tmp = None
        except OSError as err:
            raise HostIOError(f"cannot write activation file {self.output}: {err.strerror}",
                              "choose a path you can write to for --output") from None

    def discard(self) -> None:
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except FileNotFoundError:
                pass
            self._tmp = None


@contextmanager
def _sink(output: str, stdout: IO[str]) -> Iterator[CodeSink]:
    sink = CodeSink(output, stdout)
    try:
        yield sink
    finally:
        sink.discard()


def _check_role(clients: Clients, role: str) -> None:
    try:
        clients.client("iam").get_role(RoleName=role)
    except botocore.exceptions.ClientError as err:
        code = error_code(err)
        if code == "NoSuchEntity":
            raise UsageError(f"IAM role {role} does not exist",
                             "create it with `anywhere-agent registrar ensure`") from None
        if code in ("AccessDenied", "AccessDeniedException"):
            # iam:GetRole is a courtesy check; CreateActivation needs only iam:PassRole.
            LOG.debug("cannot read IAM role %s (%s); CreateActivation will judge it", role, code)
            return
        raise translate(err, f"checking IAM role {role}") from None
    except botocore.exceptions.BotoCoreError as err:
        raise translate(err, f"checking IAM role {role}") from None


def create(clients: Clients, count: int, expires: timedelta, output: str, stdout: IO[str],
           *, role: str = DEFAULT_ROLE, name_prefix: str = "",
           tags: Mapping[str, str] | None = None,
           rollout: str = "", now: datetime | None = None,
           redactor: RedactingFilter | None = None) -> list[Activation]:
    """Create activations covering `count` registrations and hand their codes to `output`;
    each code is added to `redactor` (the process's log filter) as soon as it exists.

    All or nothing: if one CreateActivation fails, those already made are deleted, so no
    code exists that nobody received.
    """
    now = now or datetime.now(timezone.utc)
    rollout = rollout or new_rollout_id(now)
    limits = split_count(count)
    expires_at = (now + expires).replace(microsecond=0)
    with _sink(output, stdout) as sink:
        _check_role(clients, role)
        all_tags = {**(tags or {}), TAG_ROLLOUT: rollout,
                    TAG_CREATED_BY: caller_identity(clients)[:256]}
        ssm = clients.client("ssm")
        made: list[Activation] = []
        try:
            for i, limit in enumerate(limits, 1):
                args: dict[str, Any] = {
                    "IamRole": role,
                    "RegistrationLimit": limit,
                    "ExpirationDate": expires_at,
                    "Description": f"anywhere-agent rollout {rollout} ({i}/{len(limits)})",
                    "Tags": [{"Key": k, "Value": v} for k, v in sorted(all_tags.items())],
                }
                if name_prefix:
                    args["DefaultInstanceName"] = name_prefix
                with aws_errors(f"creating activation {i} of {len(limits)}"):
                    resp = ssm.create_activation(**args)
                code = Secret(resp["ActivationCode"])
                if redactor is not None:
                    redactor.add(code)
                made.append(Activation(resp["ActivationId"], code, limit, expires_at, rollout,
                                       role, name_prefix, dict(all_tags)))
                LOG.info("created activation %s (limit %s, rollout %s)",
                         resp["ActivationId"], limit, rollout)
            sink.write(made)
        except BaseException:
            _rollback(clients, made)
            raise
    return made


def _rollback(clients: Clients, made: Sequence[Activation]) -> None:
    ssm = clients.client("ssm")
    for a in made:
        try:
            ssm.delete_activation(ActivationId=a.activation_id)
            LOG.warning("deleted activation %s after a failed rollout step", a.activation_id)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
            # Best effort: the original error matters more; this one is logged with its fix.
            LOG.error("could not delete activation %s after a failure: %s; delete it with "
                      "`anywhere-agent registrar revoke --activation-id %s`",
                      a.activation_id, translate(err, "rollback"), a.activation_id)


def describe_all(clients: Clients) -> list[dict[str, Any]]:
    """Every activation in the region (DescribeActivations at its 50-per-page maximum)."""
    ssm = clients.client("ssm")
    with aws_errors("listing activations"):
        return [a for page in ssm.get_paginator("describe_activations").paginate(
                    PaginationConfig={"PageSize": PAGE})
                for a in page.get("ActivationList", [])]


def tag_map(activation: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in activation.get("Tags", []) or []}


@dataclass
class RevokeResult:
    deleted: list[str] = field(default_factory=list)
    not_found: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "not_found": self.not_found}


def revoke(clients: Clients, activation_ids: Sequence[str] = (),
           rollout: str = "") -> RevokeResult:
    """Delete activations by ID or by rollout tag; already-gone IDs are reported, not errors."""
    if bool(activation_ids) == bool(rollout):
        raise UsageError("give either --activation-id (one or more) or --rollout, not both",
                         "e.g. `registrar revoke --rollout r-20250101T000000Z-abc123`")
    ids = list(dict.fromkeys(activation_ids))
    if rollout:
        ids = [a["ActivationId"] for a in describe_all(clients)
               if tag_map(a).get(TAG_ROLLOUT) == rollout]
    ssm = clients.client("ssm")
    result = RevokeResult()
    errors: list[str] = []
    for aid in ids:
        try:
            ssm.delete_activation(ActivationId=aid)
            result.deleted.append(aid)
            LOG.info("deleted activation %s", aid)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as err:
            if error_code(err) in ("InvalidActivationId", "InvalidActivation"):
                result.not_found.append(aid)
                continue
            agent_err: AgentError = translate(err, f"deleting activation {aid}")
            if fails_everything(err):
                raise agent_err from None
            errors.append(str(agent_err))
    if errors:
        raise PartialFailure(f"{len(errors)} of {len(ids)} activations could not be deleted",
                             errors, "fix the cause and run the same revoke again")
    return result
