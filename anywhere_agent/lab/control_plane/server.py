"""The lab's local AWS control plane: moto in server mode behind a WSGI front door of ours."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Callable, ClassVar, NoReturn, Optional
from urllib.parse import parse_qsl, unquote

# moto reads this when it builds the IAM backend; the ECS Anywhere role needs these policies.
os.environ.setdefault("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")

from moto.core.base_backend import BackendDict
from moto.iam.models import iam_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import BaseWSGIServer, make_server

from anywhere_agent.lab.control_plane import sigv4
from anywhere_agent.lab.control_plane.acs import Sessions, SessionTarget, session_kind
from anywhere_agent.lab.control_plane.ecs import EcsAnywhere, patch_moto
from anywhere_agent.lab.control_plane.faults import FaultInjector
from anywhere_agent.lab.control_plane.iam import Guard, session_check
from anywhere_agent.lab.control_plane.lab_api import LabApi
from anywhere_agent.lab.control_plane.principals import AuthenticationError, Principal, aws_error
from anywhere_agent.lab.control_plane.ssm import PING_TIMEOUT, SsmAnywhere
from anywhere_agent.lab.control_plane.websocket import WebSocket, handshake_response
from anywhere_agent.lab.control_plane.wire import (
    ACCOUNT_ID,
    AwsCall,
    AwsError,
    Clock,
    Response,
    error_response,
    json_response,
    parse_call,
)

LOG = logging.getLogger(__name__)
_LOAD_POLICIES = "MOTO_IAM_LOAD_MANAGED_POLICIES"

StartResponse = Callable[..., Any]


class CallCounter:
    """AWS calls seen, by service and operation (faulted ones are counted as well)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[str, dict[str, int]] = {}
        self._faulted: dict[str, dict[str, int]] = {}

    def add(self, call: AwsCall, faulted: bool = False) -> None:
        with self._lock:
            for table in (self._calls, self._faulted) if faulted else (self._calls,):
                operations = table.setdefault(call.service, {})
                operations[call.operation] = operations.get(call.operation, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": {s: dict(ops) for s, ops in self._calls.items()},
                "faulted": {s: dict(ops) for s, ops in self._faulted.items()},
            }

    def reset(self) -> None:
        with self._lock:
            self._calls.clear()
            self._faulted.clear()


class ControlPlane:
    """moto + the ECS Anywhere extension on one HTTP port; start/stop or use as a context.

    moto keeps its state in module globals, so only one control plane may run per process.
    """

    _running: ClassVar[Optional[ControlPlane]] = None
    _running_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-east-1",
        ping_timeout: float = PING_TIMEOUT,
        credential_lifetime: float = 1800.0,
        fault_seed: int = 0,
        clock: Optional[Clock] = None,
        time_scale: float = 1.0,
        region_ports: Optional[dict[str, int]] = None,
        enforce_iam: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.region = region
        self.clock = clock or Clock(scale=time_scale)
        self.calls = CallCounter()
        self.faults = FaultInjector(fault_seed)
        self.sessions = Sessions(self.clock)
        self.ssm = SsmAnywhere(self.clock, ping_timeout, credential_lifetime, _role_trusts_ssm)
        self.ecs = EcsAnywhere(self.clock, self.sessions.connected, self._instance_for_key)
        self.guard = Guard(self.ssm, self.clock, enforce_iam)  # authentication and IAM (iam.py)
        self._lab_api = LabApi(self)
        self._moto = DomainDispatcherApplication(create_backend_app)
        self._server: Optional[BaseWSGIServer] = None
        self._thread: Optional[threading.Thread] = None
        # Regional endpoints: one extra port per region, as AWS has one host per region.
        self._wanted_region_ports = dict(region_ports or {})
        self._regional: dict[str, tuple[BaseWSGIServer, threading.Thread]] = {}
        self._port_regions: dict[int, str] = {}

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the control plane is not started; call start() first")
        return f"http://{self._display_host()}:{self._server.server_port}"

    def url_for(self, region: str) -> str:
        """The endpoint that is `region`'s own (anonymous calls there belong to that region)."""
        if region in self._regional:
            return f"http://{self._display_host()}:{self._regional[region][0].server_port}"
        if region == self.region:
            return self.url
        raise KeyError(f"the control plane serves no endpoint of its own for {region}")

    @property
    def region_urls(self) -> dict[str, str]:
        return {region: self.url_for(region) for region in [self.region, *self._regional]}

    def start(self) -> ControlPlane:
        with ControlPlane._running_lock:
            if ControlPlane._running is not None:
                raise RuntimeError(
                    "a control plane already runs in this process (moto's state "
                    "is global); stop it first"
                )
            ControlPlane._running = self
        try:
            patch_moto()
            self.reset()
            self._server = make_server(
                self.host, self.port, self, threaded=True, request_handler=_QuietHandler
            )
        except BaseException:
            ControlPlane._running = None
            raise
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="lab-control-plane", daemon=True
        )
        self._thread.start()
        for region, port in self._wanted_region_ports.items():
            if region == self.region:
                continue
            server = make_server(
                self.host, port, self, threaded=True, request_handler=_QuietHandler
            )
            thread = threading.Thread(
                target=server.serve_forever, name=f"lab-control-plane-{region}", daemon=True
            )
            thread.start()
            self._regional[region] = (server, thread)
            self._port_regions[server.server_port] = region
        LOG.info("control plane listening on %s (region %s)", self.url, self.region)
        return self

    def stop(self) -> None:
        self.sessions.reset()
        for server, thread in self._regional.values():
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)
        self._regional.clear()
        self._port_regions.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server, self._thread = None, None
        with ControlPlane._running_lock:
            if ControlPlane._running is self:
                ControlPlane._running = None

    def reset(self) -> None:
        """Forget everything: moto's backends, activations, instances, counters, faults, clock."""
        _reset_moto()
        self.clock.reset()
        self.ssm.reset()
        self.sessions.reset()
        self.calls.reset()
        self.faults.configure([])

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    # -- WSGI ----------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/_lab/"):
            return _send(start_response, self._lab_api.handle(environ, _read_body(environ)))
        if path.startswith("/moto-api"):
            return self._moto(environ, start_response)  # type: ignore[no-any-return]
        if str(environ.get("HTTP_UPGRADE", "")).lower() == "websocket":
            return self._upgrade(environ, start_response)
        body = _read_body(environ)
        call = parse_call(environ, body, self._endpoint_region(environ))
        misscoped = self._misscoped(environ, call)
        if misscoped is not None:
            return _send(start_response, error_response(call, misscoped))
        delay, fault = self.faults.decide(call.service, call.operation)
        self.calls.add(call, faulted=fault is not None)
        if delay:
            time.sleep(delay)
        if fault is not None:
            return _send(start_response, error_response(call, fault))
        refusal = self.guard.check(call, environ, body)
        if refusal is not None:
            return _send(start_response, error_response(call, refusal))
        try:
            answer = self._extension(call, environ)
        except AwsError as error:
            return _send(start_response, error_response(call, error))
        if answer is not None:
            return _send(start_response, answer)
        return self._moto(environ, start_response)  # type: ignore[no-any-return]

    def _extension(self, call: AwsCall, environ: dict[str, Any]) -> Optional[Response]:
        """Answer the calls the extension owns; None hands the call to moto."""
        if call.access_key:
            credentials = self.ssm.credentials_for(call.access_key)
            if credentials is not None and credentials.expires <= self.clock.now():
                raise AwsError(
                    "ExpiredTokenException", "The security token included in the request is expired"
                )
        if call.service == "ssm" and call.operation in SsmAnywhere.OPERATIONS:
            return json_response(self.ssm.handle(call))
        if call.service == "ec2messages":
            if call.operation == "GetMessages":
                return json_response(self.ssm.get_messages(call.params))
            return json_response({})
        if call.service == "ecs" and self.ecs.handles(call):
            base_url = f"http://{environ.get('HTTP_HOST') or self._display_host()}/"
            return json_response(self.ecs.handle(call, base_url))
        return None

    def _port_region(self, environ: dict[str, Any]) -> Optional[str]:
        """The region of the regional port called, or None for the main port."""
        try:
            port = int(environ.get("SERVER_PORT") or 0)
        except ValueError:
            port = 0
        return self._port_regions.get(port)

    def _endpoint_region(self, environ: dict[str, Any]) -> str:
        """The region whose endpoint was called: its own port, else the lab's region.

        Anonymous calls (RegisterManagedInstance) carry no signature, so on AWS the endpoint
        alone decides which region's activations they are checked against.
        """
        return self._port_region(environ) or self.region

    def _misscoped(self, environ: dict[str, Any], call: AwsCall) -> Optional[AwsError]:
        """A regional endpoint refuses a call signed for another region, as AWS's do; the
        main port serves every region (the signature's scope says which), see the docs."""
        region = self._port_region(environ)
        if region is None or not call.access_key or call.region == region:
            return None
        error = sigv4.SignatureError(
            "mismatch", f"Credential should be scoped to a valid region, not '{call.region}'. ")
        return aws_error(error, call.protocol)

    # -- ACS / TCS -----------------------------------------------------------------------

    def _upgrade(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """GET /ws with Upgrade: websocket from the ECS agent: ACS or TCS, by its query."""
        query = dict(parse_qsl(str(environ.get("QUERY_STRING", ""))))
        call = parse_call(environ, b"", self._endpoint_region(environ))
        try:
            misscoped = self._misscoped(environ, call)
            if misscoped is not None:
                raise misscoped
            kind = session_kind(query)
            operation = "Poll" if kind == "acs" else "StartTelemetrySession"
            call = AwsCall(
                "ecs", operation, call.region, "rest", call.access_key, b"", call.headers
            )
            delay, fault = self.faults.decide(call.service, call.operation)
            self.calls.add(call, faulted=fault is not None)
            if delay:
                time.sleep(delay)
            if fault is not None:
                raise fault
            principal = self._verify_upgrade(call, environ)
            target = self._session_target(call, kind, query, principal.instance_id)
            self._authorize_upgrade(principal, call, target)
            self.sessions.check_refused(target)
            key = str(environ.get("HTTP_SEC_WEBSOCKET_KEY", ""))
            if str(environ.get("PATH_INFO", "")).rstrip("/").rsplit("/", 1)[-1] != "ws" or not key:
                raise AwsError("BadRequestException", "expected GET /ws with a Sec-WebSocket-Key")
        except AwsError as error:
            body = json.dumps({"type": error.code, "message": {"message": error.message}}).encode()
            return _send(
                start_response,
                (
                    error.status,
                    [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
                    body,
                ),
            )
        if kind == "acs":
            # AWS's versionInfo comes from the ACS query, not from RegisterContainerInstance.
            self.ecs.record_version(call.region, target.cluster, target.container_instance, query)
        sock = environ["werkzeug.socket"]
        sock.sendall(handshake_response(key))
        ws = WebSocket(sock)

        def registered() -> bool:
            return self.ecs.owner(call.region, target.cluster, target.container_instance) == (
                target.instance_id
            )

        self.sessions.serve(ws, target, registered)
        _hand_back_socket()

    def _session_target(
        self, call: AwsCall, kind: str, query: dict[str, str], instance_id: str
    ) -> SessionTarget:
        """Who may open this session: a key vended to the host that owns the instance."""
        arn = query.get("containerInstanceArn") or query.get("containerInstance") or ""
        cluster = query.get("clusterArn") or query.get("cluster") or "default"
        owner = self.ecs.owner(call.region, cluster, arn)
        if owner is None:
            raise AwsError(
                "InactiveInstanceException", f"Container instance {arn} is not active", 400
            )
        if owner != instance_id:
            raise AwsError(
                "AccessDeniedException",
                f"the caller's credentials belong to {instance_id}, not to {owner}",
                403,
            )
        return SessionTarget(kind, cluster, arn, instance_id)

    def _authorize_upgrade(self, principal: Principal, call: AwsCall,
                           target: SessionTarget) -> None:
        """IAM, as for every other call: the role behind the vended credentials must allow
        ecs:Poll (ACS) or ecs:StartTelemetrySession (TCS) on the container instance."""
        if not self.guard.enforce:
            return
        check = session_check(call.operation, call.region, target.cluster,
                              target.container_instance, principal)
        error = self.guard.authorize_check(principal, check, "json")
        if error is not None:
            raise error

    def _verify_upgrade(self, call: AwsCall, environ: dict[str, Any]) -> Principal:
        """The caller whose vended role credentials signed the upgrade (SigV4 for `ecs`,
        checked by the guard as every signed call is); AWS's refusal otherwise. A managed
        instance's registration key signs only its token request, as at the front door."""
        try:
            principal = self.guard.principals.authenticate(
                sigv4.Request.from_environ(environ, b""), "ecs"
            )
        except (AuthenticationError, sigv4.SignatureError) as error:
            refusal = aws_error(error, "json")
            raise AwsError(refusal.code, refusal.message, 403) from None
        if principal is None:
            raise AwsError("AccessDeniedException", "Missing Authentication Token", 403)
        if principal.kind == "managed-instance":
            raise AwsError("UnrecognizedClientException",
                           "The security token included in the request is invalid.", 403)
        if not principal.instance_id:
            raise AwsError(
                "AccessDeniedException",
                f"{principal.arn} is not a container instance's role credentials",
                403,
            )
        return principal

    def _instance_for_key(self, access_key: str) -> Optional[str]:
        credentials = self.ssm.credentials_for(access_key)
        return credentials.instance_id if credentials else None

    def _display_host(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host  # noqa: S104


class _QuietHandler(MotoRequestHandler):
    """moto's request handler, logging requests at debug level instead of to stderr."""

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        LOG.debug("%s %s", self.requestline, code)


def _hand_back_socket() -> NoReturn:
    """End a WebSocket request: werkzeug treats ConnectionError as a dropped connection,
    so it writes no HTTP response after the session and closes the socket quietly."""
    raise ConnectionAbortedError("websocket session ended")


def _read_body(environ: dict[str, Any]) -> bytes:
    """Read the whole body, chunked or not, and hand moto a plain Content-Length body.

    The SSM agent sends RequestManagedInstanceRoleToken with Transfer-Encoding: chunked and
    no Content-Length; werkzeug dechunks the stream but moto would read zero bytes.
    """
    stream = environ["wsgi.input"]
    if environ.get("wsgi.input_terminated"):
        body = bytes(stream.read())
    else:
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        body = bytes(stream.read(length)) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    environ["wsgi.input_terminated"] = False
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    return body


def _send(start_response: StartResponse, response: Response) -> list[bytes]:
    status, headers, body = response
    reason = {
        200: "OK",
        400: "Bad Request",
        403: "Forbidden",
        404: "Not Found",
        405: "Method Not Allowed",
        500: "Internal Server Error",
        502: "Bad Gateway",
        503: "Service Unavailable",
        504: "Gateway Timeout",
    }
    start_response(f"{status} {reason.get(status, 'Unknown')}", headers)
    return [body]


def _reset_moto() -> None:
    """Reset every moto backend, reusing IAM's parsed AWS managed policies.

    Parsing them costs about a second per IAM backend, which would dominate a test suite
    that resets before every test. Requests racing a reset are not supported (lab only).
    """
    kept = {
        (account_id, partition): backend.aws_managed_policies
        for account_id, account in list(iam_backends.items())
        for partition, backend in list(account.items())
    }
    previous = os.environ.get(_LOAD_POLICIES)
    os.environ[_LOAD_POLICIES] = "false"
    try:
        BackendDict.reset()
        for (account_id, partition), policies in kept.items():
            for policy in policies:
                policy.attachment_count = 0
            # Recreated here, while loading is off, then handed the kept policies.
            backend = iam_backends[account_id][partition]
            backend.aws_managed_policies = policies
            backend.managed_policies = {policy.arn: policy for policy in policies}
    finally:
        os.environ[_LOAD_POLICIES] = previous or "true"


def _role_trusts_ssm(role: str) -> bool:
    """Whether an IAM role of that name exists in moto and trusts ssm.amazonaws.com."""
    try:
        found = iam_backends[ACCOUNT_ID]["aws"].get_role(role.split("/")[-1])
    except Exception:  # noqa: BLE001 - moto raises its own not-found type
        return False
    return "ssm.amazonaws.com" in unquote(str(found.assume_role_policy_document))
