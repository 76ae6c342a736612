#!/usr/bin/python3
"""LAB DOUBLE of amazon-ecs-init + ECS agent: registers, heartbeats, serves introspection.

THIS IS NOT THE AMAZON ECS AGENT. It is a stdlib-only stand-in used by the anywhere-agent lab.
It honours ecs-init's actions and exit codes, the agent's config files, its
RegisterContainerInstance call and its introspection API (see README.md next to this file);
where dockerd answers it talks the Docker Engine API and runs lab tasks as containers.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

AGENT_VERSION = "1.105.1"
AGENT_HASH = "a8b3e7d3"  # the commit the real 1.105.1 reports; ACS records it in versionInfo
LAB_LABEL = "lab double"
VERSION_STRING = f"Amazon ECS Agent - v{AGENT_VERSION} ({LAB_LABEL})"
TARGET_PREFIX = "AmazonEC2ContainerServiceV20141113."

# Every path the double touches goes under this prefix, so tests run it on a temp dir.
ROOT = Path(os.environ.get("ANYWHERE_LAB_DOUBLE_ROOT", "/"))

INSTANCE_CONFIG = "/var/lib/ecs/ecs.config"
USER_CONFIG = "/etc/ecs/ecs.config"
LAB_CONFIG = "/etc/ecs/lab-double.json"
STATE_FILE = "/var/lib/ecs/data/agent.db"
AGENT_LOG = "/var/log/ecs/ecs-agent.log"
INIT_LOG = "/var/log/ecs/ecs-init.log"
FAULT_DIR = "/run/anywhere-lab/faults"
TIME_SCALE_FILE = "/etc/anywhere-lab/time-scale"

EXIT_OK, EXIT_ERROR, EXIT_TERMINAL = 0, 1, 5
LEVELS = {"debug": 10, "info": 20, "warn": 30, "error": 40, "crit": 50}

_stop = threading.Event()
_scale = 1.0
_log_level = LEVELS["info"]
_log_lock = threading.Lock()


def uuid4() -> str:
    """A random (version 4) UUID as text. Not the uuid module: it imports platform too, and
    both would stay resident in an idle daemon that only needs random IDs."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def path(p: str) -> Path:
    return ROOT / p.lstrip("/")


def fault(name: str) -> bool:
    return path(FAULT_DIR + "/" + name).exists()


def crashes_here() -> bool:
    """The ecs-crash fault: an empty marker crashes every version; one listing versions (one a
    line) crashes only those, like a release that dies at start on this host while the one
    before it runs (the lab's failed-upgrade case)."""
    try:
        text = path(FAULT_DIR + "/ecs-crash").read_text(encoding="utf-8")
    except OSError:
        return False
    listed = {line.strip() for line in text.splitlines() if line.strip()}
    return not listed or AGENT_VERSION in listed


def time_scale() -> float:
    """Lab seconds per real second, shared with the control plane (the lab writes the file)."""
    raw = os.environ.get("ANYWHERE_LAB_TIME_SCALE")
    if raw is None:
        try:
            raw = path(TIME_SCALE_FILE).read_text().strip()
        except OSError:
            raw = "1"
    try:
        value = float(raw)
    except ValueError:
        return 1.0
    return value if value > 0 else 1.0


def lab_wait(seconds: float) -> bool:
    """Wait `seconds` of lab time (or until stopped); True if stopped."""
    return _stop.wait(max(0.0, seconds) / _scale)


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def log(
    level: str, msg: str, target: str = AGENT_LOG, fields: Optional[Mapping[str, str]] = None
) -> None:
    """logfmt lines (the agent's default ECS_LOG_OUTPUT_FORMAT) to the log file and stdout.

    With `fields`, a structured line as ecs-agent/logger's messageTextFormatter writes it:
    `msg="..." key="value" ...` and no module (what the ACS session logs).
    """
    if LEVELS.get(level, 20) < _log_level:
        return
    stamp = now_utc().strftime("%Y-%m-%dT%H:%M:%SZ")
    if fields is None:
        module = "ecs-init" if target == INIT_LOG else "agent.go"
        tail = f"module={module}"
    else:
        tail = " ".join(f"{k}={json.dumps(v)}" for k, v in fields.items())
    line = f"level={level} time={stamp} msg={json.dumps(msg)} {tail}".rstrip() + "\n"
    with _log_lock:
        try:
            logf = path(target)
            logf.parent.mkdir(parents=True, exist_ok=True)
            with logf.open("a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass
        sys.stdout.write(line)
        sys.stdout.flush()


def init_log(level: str, msg: str) -> None:
    log(level, msg, INIT_LOG)


def read_json(p: Path) -> dict[str, Any]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------
# Configuration


def parse_env_file(p: Path) -> dict[str, str]:
    """ecs-init's getEnvVars: KEY=VALUE per line, split at the first '=', values kept verbatim.

    Quotes are NOT stripped (ecs-init hands the raw value to the agent), so ECS_CLUSTER="x"
    names a cluster with quotes in it, as on a real host.
    """
    out: dict[str, str] = {}
    try:
        text = p.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.strip().split("\n"):
        parts = line.strip().split("=", 1)
        if len(parts) == 2:
            out[parts[0]] = parts[1]
    return out


class Config:
    """Process env < /var/lib/ecs/ecs.config < /etc/ecs/ecs.config (ecs-init's LoadEnvVars)."""

    def __init__(self, env: Optional[Mapping[str, str]] = None) -> None:
        merged: dict[str, str] = dict(os.environ if env is None else env)
        merged.update(parse_env_file(path(INSTANCE_CONFIG)))
        merged.update(parse_env_file(path(USER_CONFIG)))
        self.env = merged
        self.cluster_configured = merged.get("ECS_CLUSTER", "")
        self.cluster = self.cluster_configured or "default"
        self.region = merged.get("AWS_DEFAULT_REGION", "") or merged.get("AWS_REGION", "")
        self.external = merged.get("ECS_EXTERNAL", "").lower() == "true"
        self.backend_host = merged.get("ECS_BACKEND_HOST", "")
        self.log_level = merged.get("ECS_LOGLEVEL", "info").lower()
        self.gpu = merged.get("ECS_ENABLE_GPU_SUPPORT", "").lower() == "true"
        self.instance_attributes = self._json_map("ECS_INSTANCE_ATTRIBUTES")
        self.instance_tags = self._json_map("ECS_CONTAINER_INSTANCE_TAGS")
        try:
            self.reserved_memory = int(merged.get("ECS_RESERVED_MEMORY", "0") or 0)
        except ValueError:
            self.reserved_memory = 0
        lab = read_json(path(LAB_CONFIG))
        self.creds_reread_seconds = _num(
            merged, "ANYWHERE_LAB_ECS_CREDS_REREAD_SECONDS", lab, "credentials_reread_seconds", 5.0
        )
        self.http_timeout = _num(
            merged, "ANYWHERE_LAB_ECS_HTTP_TIMEOUT", lab, "http_timeout_seconds", 10.0
        )
        self.introspection_port = int(
            _num(merged, "ANYWHERE_LAB_ECS_INTROSPECTION_PORT", lab, "introspection_port", 51678.0)
        )
        self.retry_max_seconds = _num(
            merged, "ANYWHERE_LAB_ECS_RETRY_MAX_SECONDS", lab, "retry_max_seconds", 15.0
        )
        # Lab tasks as real containers when a Docker daemon answers (see LabTasks).
        self.docker_tasks = int(
            _num(merged, "ANYWHERE_LAB_ECS_DOCKER_TASKS", lab, "docker_tasks", 1.0)
        )
        self.task_stop_delay_seconds = _num(
            merged, "ANYWHERE_LAB_ECS_TASK_STOP_DELAY_SECONDS", lab, "task_stop_delay_seconds", 3.0
        )
        tasks = lab.get("tasks")
        self.lab_tasks: list[dict[str, Any]] = (
            [t for t in tasks if isinstance(t, dict)] if isinstance(tasks, list) else []
        )

    def _json_map(self, key: str) -> dict[str, str]:
        raw = self.env.get(key, "")
        if not raw:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            log("warn", f"Invalid format for {key}, expected a json object; ignoring it")
            return {}
        return {str(k): str(v) for k, v in doc.items()}

    def endpoint(self) -> str:
        if self.backend_host:
            host = self.backend_host
            return host if "://" in host else "https://" + host
        suffix = "amazonaws.com.cn" if self.region.startswith("cn-") else "amazonaws.com"
        return f"https://ecs.{self.region}.{suffix}"


def _num(
    env: Mapping[str, str], key: str, lab: dict[str, Any], lab_key: str, default: float
) -> float:
    raw: Any = env.get(key)
    if raw is None:
        raw = lab.get(lab_key)
    try:
        return float(raw) if raw is not None else default
    except (TypeError, ValueError):
        return default


# ---------------------------------------------------------------------------------------------
# Credentials: environment, then the rotating shared file the SSM agent writes


class Credentials:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.cached: Optional[dict[str, str]] = None
        self.read_at = 0.0

    def get(self) -> Optional[dict[str, str]]:
        env = self.cfg.env
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return {
                "key": env["AWS_ACCESS_KEY_ID"],
                "secret": env["AWS_SECRET_ACCESS_KEY"],
                "token": env.get("AWS_SESSION_TOKEN", ""),
            }
        if self.cached is None or time.monotonic() - self.read_at >= self.cfg.creds_reread_seconds:
            self.cached = self._read_shared()
            self.read_at = time.monotonic()
        return self.cached

    def _read_shared(self) -> Optional[dict[str, str]]:
        profile = self.cfg.env.get("AWS_PROFILE", "") or "default"
        file = self.cfg.env.get("AWS_SHARED_CREDENTIALS_FILE", "") or "/root/.aws/credentials"
        try:
            text = path(file).read_text(encoding="utf-8")
        except OSError:
            return None
        section, found = "", {}
        for line in text.splitlines():
            s = line.strip()
            if s.startswith("[") and s.endswith("]"):
                section = s[1:-1].strip()
            elif "=" in s and section == profile:
                k, v = s.split("=", 1)
                found[k.strip()] = v.strip()
        if not found.get("aws_access_key_id"):
            return None
        return {
            "key": found["aws_access_key_id"],
            "secret": found.get("aws_secret_access_key", ""),
            "token": found.get("aws_session_token", ""),
        }


# ---------------------------------------------------------------------------------------------
# SigV4-signed AWS JSON 1.1 calls


class AwsError(Exception):
    def __init__(self, code: str, message: str, status: int = 0) -> None:
        self.code = code
        self.status = status
        super().__init__(f"{code}: {message}" + (f" (status code: {status})" if status else ""))


def sign(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    region: str,
    service: str,
    creds: dict[str, str],
    when: dt.datetime,
) -> str:
    parsed = urllib.parse.urlsplit(url)
    canon = {k.lower(): " ".join(v.strip().split()) for k, v in headers.items()}
    signed = ";".join(sorted(canon))
    canonical = "\n".join(
        [
            method,
            parsed.path or "/",
            parsed.query,
            "".join(f"{k}:{canon[k]}\n" for k in sorted(canon)),
            signed,
            hashlib.sha256(body).hexdigest(),
        ]
    )
    day = when.strftime("%Y%m%d")
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            when.strftime("%Y%m%dT%H%M%SZ"),
            scope,
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    key = ("AWS4" + creds["secret"]).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    cred = f"{creds['key']}/{scope}"
    return f"AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={signed}, Signature={sig}"


def call(
    cfg: Config, creds: Credentials, operation: str, payload: dict[str, Any]
) -> dict[str, Any]:
    values = creds.get()
    if values is None:
        raise AwsError("NoCredentialProviders", "no valid providers in chain")
    url = cfg.endpoint().rstrip("/") + "/"
    body = compact(payload).encode()
    when = now_utc()
    headers = {
        "Host": urllib.parse.urlsplit(url).netloc,
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": TARGET_PREFIX + operation,
        "X-Amz-Date": when.strftime("%Y%m%dT%H%M%SZ"),
    }
    if values.get("token"):
        headers["X-Amz-Security-Token"] = values["token"]
    headers["Authorization"] = sign("POST", url, headers, body, cfg.region, "ecs", values, when)
    headers["User-Agent"] = (
        f"aws-sdk-go-v2/1.30 os/linux lang/go md/agent/{AGENT_VERSION} ({LAB_LABEL})"
    )
    del headers["Host"]  # urllib sends the same Host itself
    # The URL is built from ECS_BACKEND_HOST or the region, always http(s): see Config.endpoint.
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    # ProxyHandler() reads HTTP(S)_PROXY / NO_PROXY from os.environ; ecs.config values were
    # merged into os.environ by main() so the agent honours the proxy keys written there.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    try:
        with opener.open(req, timeout=cfg.http_timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as err:
        try:
            doc = json.loads(err.read() or b"{}")
        except ValueError:
            doc = {}
        code = str(doc.get("__type", "") or f"HTTP{err.code}").rsplit("#", 1)[-1]
        raise AwsError(
            code, str(doc.get("message") or doc.get("Message") or err.reason), err.code
        ) from None
    except (urllib.error.URLError, OSError) as err:
        raise AwsError(
            "RequestError", f"send request failed: {getattr(err, 'reason', err)}"
        ) from None
    try:
        doc = json.loads(raw or b"{}")
    except ValueError:
        raise AwsError("SerializationError", "failed decoding JSON response") from None
    return doc if isinstance(doc, dict) else {}


# ---------------------------------------------------------------------------------------------
# Host facts and the registration body


def cpu_arch() -> str:
    machine = os.uname().machine  # what platform.machine() returns
    return {"amd64": "x86_64", "aarch64": "arm64", "i686": "i386", "i386": "i386"}.get(
        machine, machine
    )


def os_family_detailed() -> str:
    """ecs-init's GetLinuxOSFamily: "<ID>_<VERSION_ID>" from /etc/os-release, else "linux"."""
    ident, version = "", ""
    try:
        text = path("/etc/os-release").read_text(encoding="utf-8")
    except OSError:
        text = ""
    for line in text.splitlines():
        if line.startswith("ID="):
            ident = line[3:].strip().strip("\"'")
        elif line.startswith("VERSION_ID="):
            version = line[11:].strip().strip("\"'")
    return f"{ident}_{version}" if ident and version else "linux"


def memory_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 1024


DOCKER_API_VERSIONS = [f"1.{n}" for n in range(17, 45)]
LOGGING_DRIVERS = ["json-file", "syslog", "journald", "gelf", "fluentd", "awslogs", "none"]
NAME_ONLY_CAPABILITIES = [
    "com.amazonaws.ecs.capability.privileged-container",
    *(f"com.amazonaws.ecs.capability.docker-remote-api.{v}" for v in DOCKER_API_VERSIONS),
    *(f"com.amazonaws.ecs.capability.logging-driver.{d}" for d in LOGGING_DRIVERS),
    "ecs.capability.execution-role-awslogs",
    "com.amazonaws.ecs.capability.ecr-auth",
    "ecs.capability.execution-role-ecr-pull",
    "ecs.capability.container-health-check",
    "com.amazonaws.ecs.capability.task-iam-role",
    "com.amazonaws.ecs.capability.task-iam-role-network-host",
    "ecs.capability.task-cpu-mem-limit",
    "ecs.capability.increased-task-cpu-limit",
    "ecs.capability.docker-plugin.local",
    "ecs.capability.secrets.asm.environment-variables",
    "ecs.capability.secrets.asm.bootstrap.log-driver",
    "ecs.capability.secrets.ssm.environment-variables",
    "ecs.capability.secrets.ssm.bootstrap.log-driver",
    "ecs.capability.container-ordering",
    "ecs.capability.full-sync",
    "ecs.capability.env-files.s3",
    "ecs.capability.logging-driver.awsfirelens",
    "ecs.capability.firelens.fluentbit",
    "ecs.capability.firelens.options.config.file",
    "ecs.capability.execute-command",
    "ecs.capability.external",
]
EXEC_CAPABILITY = "ecs.capability.execute-command"
# What ecs-init bind-mounts as /managed-agents/execute-command (agent_capability_unix.go).
EXEC_DEPS = "/var/lib/ecs/deps/execute-command"
EXEC_BINARIES = ("amazon-ssm-agent", "ssm-agent-worker", "ssm-session-worker")


def exec_deps_present(root: str = EXEC_DEPS) -> bool:
    """The real agent's appendExecCapabilities: bin/, config/ and certs/tls-ca-bundle.pem
    exist, and some bin/<digits.dots>/ holds all three binaries (existence only)."""
    base = Path(root)
    if not all((base / d).is_dir() for d in ("bin", "config", "certs")):
        return False
    if not (base / "certs" / "tls-ca-bundle.pem").exists():
        return False
    for version in (base / "bin").iterdir():
        if version.is_dir() and re.fullmatch(r"\d+(\.\d+)*", version.name) and \
                all((version / b).exists() for b in EXEC_BINARIES):
            return True
    return False


def attributes(
    cfg: Config, first_registration: bool, docker_apis: Optional[list[str]] = None
) -> list[dict[str, str]]:
    """`docker_apis`: the daemon's API versions the agent knows; None keeps the static list
    (no Docker on the host: the real agent would not start at all)."""
    attrs: list[dict[str, str]] = []
    if first_registration:  # the real agent sends custom attributes only at first registration
        attrs += [{"name": k, "value": v} for k, v in cfg.instance_attributes.items()]
    names = NAME_ONLY_CAPABILITIES
    if not exec_deps_present():
        names = [n for n in names if n != EXEC_CAPABILITY]
    if docker_apis is not None:
        prefix = "com.amazonaws.ecs.capability.docker-remote-api."
        names = [n for n in names if not n.startswith(prefix)]
        names[1:1] = [prefix + v for v in docker_apis]
    attrs += [{"name": name} for name in names]
    attrs += [
        {"name": "ecs.os-type", "value": "linux"},
        {"name": "ecs.os-family", "value": "LINUX"},
        {"name": "ecs.os-type-detailed", "value": os_family_detailed()},
        {"name": "ecs.cpu-architecture", "value": cpu_arch()},
    ]
    return attrs


VALIDATED = ("ecs.os-type", "ecs.os-family", "ecs.os-type-detailed", "ecs.cpu-architecture")


def registration_body(cfg: Config, arn: str) -> dict[str, Any]:
    memory = memory_mib() - cfg.reserved_memory
    engine = docker_version_doc()
    apis = supported_docker_apis(engine) if engine else None
    body: dict[str, Any] = {
        "attributes": attributes(cfg, first_registration=not arn, docker_apis=apis),
        "clientToken": uuid4(),
        "cluster": cfg.cluster,
        "instanceIdentityDocument": "",
        "instanceIdentityDocumentSignature": "",
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": (os.cpu_count() or 1) * 1024},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
            {
                "name": "PORTS",
                "type": "STRINGSET",
                "stringSetValue": ["22", "2375", "2376", "51678", "51679"],
            },
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
        ],
    }
    if arn:
        body["containerInstanceArn"] = arn
    if cfg.instance_tags:
        body["tags"] = [{"key": k, "value": v} for k, v in cfg.instance_tags.items()]
    return body


# ---------------------------------------------------------------------------------------------
# Docker Engine API and lab tasks (the docker side of the double; the protocol side is above)
#
# Like the real agent, the double talks to dockerd over its unix socket: the engine's version
# and API range feed the registration's docker-remote-api capabilities and the ACS connect's
# dockerVersion, and "lab tasks" run as real containers. Lab tasks are a lab simplification:
# the double starts them itself (no scheduler places them), reports each with
# SubmitTaskStateChange (as the real agent reports state changes), and stops them once its
# container instance is DRAINING, which it learns by reading its own instance
# (DescribeContainerInstances) where the real agent would get a stop from ACS.

DOCKER_SOCKET = "/var/run/docker.sock"
TASK_IMAGE = "anywhere-lab/task"
TASK_TAG = "1"
TASK_FAMILY = "lab-sleep"
TASK_LABEL = "com.amazonaws.ecs.task-arn"
# The agent's known Docker API versions (agent/dockerclient/versions.go), oldest first.
KNOWN_DOCKER_APIS = [f"1.{n}" for n in range(17, 45)]


class DockerError(Exception):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, socket_path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._socket_path)
        self.sock = sock


def docker_call(
    method: str,
    api_path: str,
    body: Any = None,
    *,
    raw: Optional[bytes] = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """One Docker Engine API request; returns (status, decoded JSON or None)."""
    conn = _UnixConnection(str(path(DOCKER_SOCKET)), timeout)
    data = raw if raw is not None else (compact(body).encode() if body is not None else None)
    headers = {"Content-Type": content_type} if data is not None else {}
    try:
        conn.request(method, api_path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
    except OSError as exc:
        raise DockerError(f"Cannot connect to the Docker daemon at {DOCKER_SOCKET}: {exc}") \
            from None
    finally:
        conn.close()
    try:
        doc = json.loads(payload) if payload else None
    except ValueError:
        doc = None
    return resp.status, doc


def docker_version_doc() -> Optional[dict[str, Any]]:
    try:
        status, doc = docker_call("GET", "/version", timeout=5.0)
    except DockerError:
        return None
    return doc if status == 200 and isinstance(doc, dict) else None


def docker_version() -> str:
    """The engine's version ("20.10.24"), or "" without a reachable daemon."""
    doc = docker_version_doc()
    return str(doc.get("Version", "")) if doc else ""


def acs_docker_version(version: str) -> str:
    """The ACS connect's dockerVersion value (acs/session/session.go formatDockerVersion)."""
    if not version or version == "containerd":
        return version
    return "DockerVersion: " + version


def _api_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except ValueError:
        return (0,)


def supported_docker_apis(doc: dict[str, Any]) -> list[str]:
    """The agent's known API versions the daemon serves (dockerclient SupportedVersions)."""
    low = _api_tuple(str(doc.get("MinAPIVersion", "1.12")))
    high = _api_tuple(str(doc.get("ApiVersion", "0")))
    return [v for v in KNOWN_DOCKER_APIS if low <= _api_tuple(v) <= high]


def _rootfs_tar() -> bytes:
    """A tiny image root: /bin/sleep and the libraries it loads, taken from this host."""
    # Imported here: only lab tasks (a host with Docker) build an image, and the idle
    # double without Docker should not keep these modules resident.
    import io
    import subprocess
    import tarfile

    sleep = shutil.which("sleep") or "/bin/sleep"
    files = [sleep]
    ldd = subprocess.run(["ldd", sleep], capture_output=True, text=True, timeout=30, check=False)
    for line in ldd.stdout.splitlines():
        for part in line.split():
            if part.startswith("/") and os.path.exists(part):
                files.append(part)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name in dict.fromkeys(files):
            # Dereference: the image needs the library itself, not the host's symlink to it.
            tar.add(os.path.realpath(name), arcname=name.lstrip("/"), recursive=False)
        tar.add(os.path.realpath(sleep), arcname="bin/sleep", recursive=False)
    return buf.getvalue()


def ensure_task_image() -> str:
    """The lab task image, imported locally from a root filesystem (no registry)."""
    ref = f"{TASK_IMAGE}:{TASK_TAG}"
    status, _ = docker_call("GET", f"/images/{ref}/json")
    if status == 200:
        return ref
    query = urllib.parse.urlencode(
        {"fromSrc": "-", "repo": TASK_IMAGE, "tag": TASK_TAG, "message": "anywhere-agent lab task"}
    )
    status, _ = docker_call(
        "POST", f"/images/create?{query}", raw=_rootfs_tar(), content_type="application/x-tar",
        timeout=120.0,
    )
    if status != 200:
        raise DockerError(f"docker import of {ref} answered HTTP {status}")
    log("info", f"Imported the lab task image {ref}")
    return ref


def task_containers(cluster: str) -> list[dict[str, Any]]:
    """Containers of lab tasks in this cluster (the labels the real agent sets), any state."""
    filters = compact({"label": [TASK_LABEL, f"com.amazonaws.ecs.cluster={cluster}"]})
    query = urllib.parse.urlencode({"filters": filters, "all": "true"})
    status, doc = docker_call("GET", f"/containers/json?{query}")
    if status != 200 or not isinstance(doc, list):
        raise DockerError(f"listing containers answered HTTP {status}")
    return [c for c in doc if isinstance(c, dict)]


def start_task_container(cluster: str, task_arn: str, image: str) -> dict[str, Any]:
    task_id = task_arn.rsplit("/", 1)[-1]
    name = f"ecs-{TASK_FAMILY}-1-sleep-{task_id[:20]}"
    spec = {
        "Image": image,
        "Cmd": ["/bin/sleep", "infinity"],
        "Labels": {
            TASK_LABEL: task_arn,
            "com.amazonaws.ecs.cluster": cluster,
            "com.amazonaws.ecs.container-name": "sleep",
            "com.amazonaws.ecs.task-definition-family": TASK_FAMILY,
            "com.amazonaws.ecs.task-definition-version": "1",
        },
        # docker-init forwards SIGTERM, so `stop` ends sleep at once instead of after a kill.
        "HostConfig": {"Init": True, "NetworkMode": "none"},
    }
    status, doc = docker_call("POST", f"/containers/create?name={name}", spec)
    if status != 201 or not isinstance(doc, dict):
        raise DockerError(f"creating {name} answered HTTP {status}: {doc}")
    cid = str(doc["Id"])
    status, _ = docker_call("POST", f"/containers/{cid}/start")
    if status not in (204, 304):
        raise DockerError(f"starting {name} answered HTTP {status}")
    return {"Id": cid, "Names": ["/" + name], "Labels": spec["Labels"]}


def stop_task_container(cid: str) -> None:
    status, _ = docker_call("POST", f"/containers/{cid}/stop?t=5", timeout=30.0)
    if status not in (204, 304, 404):
        raise DockerError(f"stopping {cid[:12]} answered HTTP {status}")
    docker_call("DELETE", f"/containers/{cid}")


def introspection_task(container: dict[str, Any], status: str) -> dict[str, Any]:
    labels = container.get("Labels") or {}
    names = container.get("Names") or ["/"]
    return {
        "Arn": labels.get(TASK_LABEL, ""),
        "DesiredStatus": status,
        "KnownStatus": status,
        "Family": TASK_FAMILY,
        "Version": "1",
        "Containers": [
            {
                "DockerId": container.get("Id", ""),
                "DockerName": str(names[0]).lstrip("/"),
                "Name": "sleep",
            }
        ],
    }


def _task_arn(container: dict[str, Any]) -> str:
    return str((container.get("Labels") or {}).get(TASK_LABEL, ""))


class LabTasks:
    """Keeps `count` lab task containers running while ACTIVE, stops them when DRAINING."""

    def __init__(self, cfg: Config, creds: Credentials, state: AgentState) -> None:
        self.cfg, self.creds, self.state = cfg, creds, state
        self.count = cfg.docker_tasks
        self.stop_delay = cfg.task_stop_delay_seconds
        self._draining_since: Optional[float] = None

    def _report(self, task_arn: str, status: str, reason: str = "") -> None:
        payload: dict[str, Any] = {"cluster": self.cfg.cluster, "task": task_arn, "status": status}
        if reason:
            payload["reason"] = reason
        try:
            call(self.cfg, self.creds, "SubmitTaskStateChange", payload)
        except AwsError as exc:
            log("warn", f"Error submitting task state change {task_arn} {status}: {exc}")

    def _instance_status(self, arn: str) -> str:
        try:
            doc = call(self.cfg, self.creds, "DescribeContainerInstances",
                       {"cluster": self.cfg.cluster, "containerInstances": [arn]})
        except AwsError as exc:
            log("debug", f"lab tasks: cannot read the instance status: {exc}")
            return ""
        found = doc.get("containerInstances") or [{}]
        return str(found[0].get("status", ""))

    def tick(self) -> None:
        with self.state.lock:
            arn = self.state.arn or ""
        if not arn or self.count <= 0:
            return
        running = []
        for c in task_containers(self.cfg.cluster):
            if c.get("State") == "running":
                running.append(c)
                continue
            # Ended without us (dockerd restarted, killed): ECS must hear it stopped.
            stop_task_container(str(c["Id"]))
            self._report(_task_arn(c), "STOPPED", f"Essential container exited ({c.get('Status')})")
        status = self._instance_status(arn)
        if status == "DRAINING":
            if self._draining_since is None:
                self._draining_since = time.monotonic()
                log("info", f"Instance DRAINING: stopping {len(running)} lab tasks "
                    f"after {self.stop_delay:.0f}s")
            if running and time.monotonic() - self._draining_since >= self.stop_delay:
                for c in running:
                    stop_task_container(str(c["Id"]))
                    self._report(_task_arn(c), "STOPPED", "Service draining")
                running = []
        else:
            self._draining_since = None
            if status == "ACTIVE" and len(running) < self.count:
                image = ensure_task_image()
                for _ in range(self.count - len(running)):
                    task_arn = (
                        f"arn:aws:ecs:{self.cfg.region}:{arn.split(':')[4]}:task/"
                        f"{self.cfg.cluster}/{uuid4().replace('-', '')}"
                    )
                    started = start_task_container(self.cfg.cluster, task_arn, image)
                    log("info", f"Started lab task {task_arn} in container {started['Id'][:12]}")
                    running.append(started)
            for c in running:
                # Reported on every pass, like the agent's state-change resubmission: a new
                # control plane or a lost report still learns the task is there.
                self._report(_task_arn(c), "RUNNING")
        with self.state.lock:
            self.state.tasks = [introspection_task(c, "RUNNING") for c in running]

    def run(self) -> None:
        while not _stop.is_set():
            if not fault("ecs-hang"):
                try:
                    self.tick()
                except DockerError as exc:
                    log("warn", f"lab tasks: {exc}")
            _stop.wait(LAB_TASKS_TICK_SECONDS)


# How often the lab-task worker reconciles its containers (lab-only; the real agent acts on
# ACS task payloads instead).
LAB_TASKS_TICK_SECONDS = 5.0


def start_lab_tasks(
    cfg: Config, creds: Credentials, state: AgentState
) -> Optional[threading.Thread]:
    """Run lab tasks in a thread when a Docker daemon answers; the double needs none."""
    if cfg.docker_tasks <= 0 or docker_version_doc() is None:
        return None
    worker = threading.Thread(target=LabTasks(cfg, creds, state).run, name="lab-tasks",
                              daemon=True)
    worker.start()
    return worker


# ---------------------------------------------------------------------------------------------
# Introspection API (127.0.0.1:51678)


class AgentState:
    def __init__(self, cfg: Config) -> None:
        self.lock = threading.Lock()
        self.cluster = cfg.cluster
        self.arn: Optional[str] = None
        self.tasks: list[dict[str, Any]] = list(cfg.lab_tasks)
        self.sessions: dict[str, bool] = {}
        self.lab_tasks: Optional[threading.Thread] = None


class Handler(BaseHTTPRequestHandler):
    state: AgentState
    server_version = "lab-double"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log("debug", "introspection: " + (format % args))

    def _json(self, status: int, doc: Any) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        deadline = time.monotonic() + 3600
        while fault("ecs-hang") and time.monotonic() < deadline and not _stop.is_set():
            time.sleep(0.2)  # hold the connection open without answering, like a wedged agent
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        with self.state.lock:
            cluster, arn, tasks = self.state.cluster, self.state.arn, list(self.state.tasks)
        if parsed.path == "/v1/metadata":
            self._json(
                200, {"Cluster": cluster, "ContainerInstanceArn": arn, "Version": VERSION_STRING}
            )
        elif parsed.path == "/v1/tasks":
            self._tasks(query, tasks)
        elif parsed.path == "/license":
            data = b"Amazon ECS Agent (anywhere-agent lab double): no third-party licenses.\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        else:
            data = b"404 page not found\n"
            self.send_response(404)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def _tasks(self, query: dict[str, list[str]], tasks: list[dict[str, Any]]) -> None:
        empty = {"Arn": "", "KnownStatus": "", "Family": "", "Version": "", "Containers": None}
        if "dockerid" in query and "taskarn" in query:
            self._json(400, empty)
            return
        if "taskarn" in query:
            arn = query["taskarn"][0]
            matches = [t for t in tasks if t.get("Arn") == arn]
        elif "dockerid" in query:
            did = query["dockerid"][0]

            def has(task: dict[str, Any]) -> bool:
                ids = [str(c.get("DockerId", "")) for c in task.get("Containers") or []]
                # The real agent treats an ID of 12 characters or fewer as a short ID (prefix).
                return any(i == did if len(did) > 12 else i[:12] == did for i in ids)

            matches = [t for t in tasks if has(t)]
        else:
            self._json(200, {"Tasks": tasks})
            return
        if not matches:
            self._json(404, empty)
        elif len(matches) > 1:
            self._json(400, empty)
        else:
            self._json(200, matches[0])


def start_introspection(cfg: Config, state: AgentState) -> Optional[ThreadingHTTPServer]:
    handler = type("BoundHandler", (Handler,), {"state": state})
    try:
        server = ThreadingHTTPServer(("127.0.0.1", cfg.introspection_port), handler)
    except OSError as exc:
        log(
            "error", f"Unable to start introspection server on port {cfg.introspection_port}: {exc}"
        )
        return None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="introspection", daemon=True).start()
    return server


# ---------------------------------------------------------------------------------------------
# The agent


def load_state() -> dict[str, Any]:
    return read_json(path(STATE_FILE))


def save_state(doc: dict[str, Any]) -> None:
    p = path(STATE_FILE)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(compact(doc), encoding="utf-8")
    os.chmod(tmp, 0o600)
    os.replace(tmp, p)


TRANSIENT = {"ThrottlingException", "ServerException", "LimitExceededException"}
TERMINAL = {"InvalidParameterException", "ClientException"}


def register(cfg: Config, creds: Credentials, state: AgentState, arn: str) -> int:
    """Return 0 with state.arn set, or the agent's exit code (5 terminal, 1 restart)."""
    delay = 0.25
    deadline = time.monotonic() + 3600  # the real agent's rciMaxRetryTimeAllowed
    created = False
    body = registration_body(cfg, arn)
    while not _stop.is_set():
        log("info", "Restored from checkpoint file" if arn else "Registering Instance with ECS")
        try:
            answer = call(cfg, creds, "RegisterContainerInstance", body)
        except AwsError as exc:
            log("error", f"Unable to register as a container instance with ECS: {exc}")
            if exc.code in TRANSIENT and time.monotonic() < deadline:
                _stop.wait(delay)
                delay = min(cfg.retry_max_seconds, delay * 2)
                continue
            if (
                exc.code == "ClusterNotFoundException"
                and not cfg.cluster_configured
                and not created
            ):
                # No ECS_CLUSTER: like the real agent, create "default" once and register again.
                try:
                    call(cfg, creds, "CreateCluster", {"clusterName": cfg.cluster})
                    created = True
                    continue
                except AwsError as cexc:
                    log("crit", f"Could not create cluster: {cexc}")
                    return EXIT_ERROR
            if exc.code in TERMINAL:
                log(
                    "crit",
                    f"Agent will terminally exit, unable to register container instance: {exc}",
                )
                return EXIT_TERMINAL
            log("error", f"Error registering container instance: {exc}")
            return EXIT_ERROR
        instance = answer.get("containerInstance") or {}
        got = {
            str(a.get("name")): a.get("value")
            for a in instance.get("attributes") or []
            if isinstance(a, dict)
        }
        sent = {a["name"]: a.get("value") for a in body["attributes"]}
        missing = [n for n in VALIDATED if got.get(n) != sent.get(n)]
        if missing:
            log(
                "error",
                "Error registering attributes: Attribute validation failed; "
                f"missingAttributes={','.join(missing)}",
            )
            log(
                "crit",
                "Agent will terminally exit, unable to register container instance: "
                "Attribute validation failed",
            )
            return EXIT_TERMINAL
        new_arn = str(instance.get("containerInstanceArn") or arn)
        with state.lock:
            state.arn = new_arn
            state.cluster = cfg.cluster
        save_state(
            {
                "lab_double": True,
                "Cluster": cfg.cluster,
                "ContainerInstanceArn": new_arn,
                "EC2InstanceID": str(instance.get("ec2InstanceId", "")),
                "AgentVersion": AGENT_VERSION,
            }
        )
        log(
            "info",
            "Instance registration completed successfully "
            f"instanceArn={new_arn} cluster={cfg.cluster}",
        )
        return EXIT_OK
    return EXIT_OK


def run_agent(cfg: Config, state: AgentState) -> int:
    global _log_level
    _log_level = LEVELS.get(cfg.log_level, 20)
    log("info", "Starting Amazon ECS Agent", fields={"version": AGENT_VERSION,
                                                       "commit": f"lab-double ({LAB_LABEL})"})
    if not cfg.region:
        log("crit", "Error loading config: Invalid configuration: AWSRegion must be set")
        return EXIT_TERMINAL
    if cfg.gpu and not Path("/dev/nvidia0").exists():
        log("warn", "No GPU devices found, ignoring the GPU support config")
    saved = load_state()
    arn = str(saved.get("ContainerInstanceArn") or "")
    if arn and saved.get("Cluster") and saved.get("Cluster") != cfg.cluster:
        log(
            "crit",
            f"Data mismatch; saved cluster '{saved.get('Cluster')}' does not match configured "
            f"cluster '{cfg.cluster}'. Perhaps you want to delete the configured checkpoint file?",
        )
        return EXIT_TERMINAL
    creds = Credentials(cfg)
    if creds.get() is None:
        log(
            "error",
            "Error getting valid credentials: NoCredentialProviders: no valid providers in chain",
        )
    code = register(cfg, creds, state, arn)
    if code != EXIT_OK or _stop.is_set():
        return code
    if state.lab_tasks is None or not state.lab_tasks.is_alive():
        state.lab_tasks = start_lab_tasks(cfg, creds, state)
    with state.lock:
        arn = state.arn or ""
    # Like the real agent: DiscoverPollEndpoint once (cached 12 h), then ACS and TCS sessions
    # that run until the agent stops; "connected" in AWS's sense is the ACS session.
    endpoints = Endpoints(cfg, creds, arn)
    sessions = [
        threading.Thread(
            target=session_loop, args=(kind, cfg, creds, arn, endpoints, state), daemon=True
        )
        for kind in (ACS, TCS)
    ]
    for thread in sessions:
        thread.start()
    while not _stop.is_set():
        _stop.wait(0.5)
    for thread in sessions:
        thread.join(timeout=5)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# ACS and TCS: WebSocket sessions (ecs-agent/acs/session, ecs-agent/tcs/handler, wsclient)

ACS, TCS = "acs", "tcs"
DISCOVER_CACHE_SECONDS = 12 * 3600.0  # ecs_client.go: the poll endpoint is cached 12 h
HEARTBEAT_TIMEOUT, HEARTBEAT_JITTER = 60.0, 60.0  # session.go heartbeatTimeout/Jitter
DISCONNECT_TIMEOUT, DISCONNECT_JITTER = 1800.0, 300.0  # wsclient DisconnectTimeout/JitterMax
INACTIVE_RECONNECT_SECONDS = 3600.0  # session.go inactiveInstanceReconnectDelay
METRICS_PUBLISH_SECONDS = 20.0  # tcs client DefaultContainerMetricsPublishInterval
# (min, max, jitter, multiplier) of retry.NewExponentialBackoff, per session kind
BACKOFF = {ACS: (0.25, 120.0, 0.2, 1.5), TCS: (1.0, 60.0, 0.2, 1.5)}
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Backoff:
    """retry.ExponentialBackoff: the next delay grows by `multiple`, jittered, capped."""

    def __init__(self, low: float, high: float, jitter: float, multiple: float) -> None:
        self.low, self.high, self.jitter, self.multiple = low, high, jitter, multiple
        self.current = low

    def duration(self) -> float:
        value = self.current
        self.current = min(self.high, self.current * self.multiple)
        return value + value * self.jitter * random.random()  # noqa: S311 - jitter

    def reset(self) -> None:
        self.current = self.low


class Endpoints:
    """DiscoverPollEndpoint's answer, asked once and kept for 12 hours of lab time."""

    def __init__(self, cfg: Config, creds: Credentials, arn: str) -> None:
        self.cfg, self.creds, self.arn = cfg, creds, arn
        self.lock = threading.Lock()
        self.answer: dict[str, Any] = {}
        self.expires = 0.0

    def get(self, kind: str) -> str:
        with self.lock:
            if not self.answer or lab_now() >= self.expires:
                self.answer = call(
                    self.cfg,
                    self.creds,
                    "DiscoverPollEndpoint",
                    {"cluster": self.cfg.cluster, "containerInstance": self.arn},
                )
                self.expires = lab_now() + DISCOVER_CACHE_SECONDS
            key = "endpoint" if kind == ACS else "telemetryEndpoint"
            return str(self.answer.get(key) or "")


_lab_epoch = (time.monotonic(), 0.0)


def lab_now() -> float:
    """Lab seconds since the double started (monotonic, scaled)."""
    return (time.monotonic() - _lab_epoch[0]) * _scale


def _docker_version_param() -> list[tuple[str, str]]:
    # acs/session/session.go acsURL: dockerVersion only when the agent knows the engine's.
    version = acs_docker_version(docker_version())
    return [("dockerVersion", version)] if version else []


def session_query(kind: str, cfg: Config, arn: str) -> list[tuple[str, str]]:
    if kind == ACS:
        return [
            ("clusterArn", cfg.cluster),
            ("containerInstanceArn", arn),
            ("agentHash", AGENT_HASH),
            ("agentVersion", AGENT_VERSION),
            ("seqNum", "1"),
            ("protocolVersion", "2"),
            *_docker_version_param(),
            ("sendCredentials", "true"),
        ]
    return [
        ("cluster", cfg.cluster),
        ("containerInstance", arn),
        ("agentVersion", AGENT_VERSION),
        ("agentHash", AGENT_HASH),
    ]


class AcsLog:
    """The ACS session's log lines, worded and levelled as ecs-agent/acs/session/session.go
    writes them at the same moments (the supervisor reads the real agent's words)."""

    def __init__(self, arn: str) -> None:
        self.fields = {"containerInstanceARN": arn}

    def dialling(self, url: str) -> None:
        log("info", "Establishing a Websocket connection", fields={"url": url})  # wsclient

    def discover_failed(self, exc: Exception) -> None:
        log("error", "ACS: Unable to discover poll endpoint", fields={**self.fields,
                                                                      "error": str(exc)})

    def connect_failed(self, exc: Exception) -> None:
        log("error", "Failed to connect to ACS", fields={**self.fields, "error": str(exc)})

    def connected(self) -> None:
        # Go prints a time.Time field with %+v: "2026-11-30 05:00:00.123456789 +0000 UTC".
        stamp = now_utc().strftime("%Y-%m-%d %H:%M:%S.%f000 +0000 UTC")
        log("info", "Connected to ACS endpoint", fields={**self.fields,
                                                         "lastConnectedTime": stamp})

    def session_done(self) -> None:
        log("info", "Current ACS session is done and a new one might be created.",
            fields=self.fields)

    def silence(self) -> None:
        log("warn", "ACS Connection hasn't had any activity for too long; closing connection",
            fields={})
        log("info", "Disconnected from ACS", fields={})

    def deregistered(self) -> None:
        log("info", "Container instance is deregistered", fields=self.fields)

    def valid_close(self) -> None:
        log("info", "ACS WebSocket connection closed for a valid reason", fields=self.fields)
        log("info", "Reconnecting to ACS immediately without waiting", fields=self.fields)

    def closed(self, error: str, delay: float) -> None:
        log("warn", "ACS WebSocket connection closed", fields={**self.fields, "error": error})
        log("info", "Waiting before reconnecting to ACS",
            fields={"reconnectDelay": f"{delay:.6f}s", **self.fields})

    def waited(self) -> None:
        log("info", "Done waiting; reconnecting to ACS", fields=self.fields)

    def ended(self) -> None:
        log("info", "ACS session ended (context closed)",
            fields={"reason": "context canceled", **self.fields})


def session_loop(
    kind: str, cfg: Config, creds: Credentials, arn: str, endpoints: Endpoints, state: AgentState
) -> None:
    """Dial, serve until the session ends, back off, dial again, until the agent stops."""
    if kind == ACS:
        acs_session_loop(cfg, creds, arn, endpoints, state)
        return
    backoff = Backoff(*BACKOFF[kind])
    name = kind.upper()
    while not _stop.is_set():
        if fault("ecs-hang"):
            _stop.wait(0.5)
            continue
        try:
            endpoint = endpoints.get(kind)
            conn = ws_connect(cfg, creds, endpoint, session_query(kind, cfg, arn))
        except AwsError as exc:
            if exc.code == "InactiveInstanceException":
                log("warn", f"{name}: the container instance is inactive; waiting an hour")
                lab_wait(INACTIVE_RECONNECT_SECONDS)
                continue
            delay = backoff.duration()
            log("error", f"Error connecting to {name}: {exc}; reconnecting in {delay:.2f}s")
            lab_wait(delay)
            continue
        log("info", f"Connected to {name} endpoint")
        with state.lock:
            state.sessions[kind] = True
        try:
            outcome = serve_session(kind, conn, cfg, arn, backoff)
        finally:
            with state.lock:
                state.sessions[kind] = False
            conn.shutdown()
        if outcome == "inactive":
            lab_wait(INACTIVE_RECONNECT_SECONDS)
        elif outcome == "disconnect":
            backoff.reset()  # the agent's own periodic disconnect: dial again at once
        elif not _stop.is_set():
            delay = backoff.duration()
            log("info", f"{name} session ended ({outcome}); reconnecting in {delay:.2f}s")
            lab_wait(delay)


def acs_session_loop(
    cfg: Config, creds: Credentials, arn: str, endpoints: Endpoints, state: AgentState
) -> None:
    """session.go Start: one startSessionOnce after another, with its reconnectDelay between."""
    backoff = Backoff(*BACKOFF[ACS])
    say = AcsLog(arn)
    while not _stop.is_set():
        if fault("ecs-hang"):
            _stop.wait(0.5)
            continue
        error = ""
        try:
            endpoint = endpoints.get(ACS)
        except AwsError as exc:
            say.discover_failed(exc)
            error = str(exc)
        if not error:
            try:
                say.dialling(endpoint)
                conn = ws_connect(cfg, creds, endpoint, session_query(ACS, cfg, arn))
            except AwsError as exc:
                say.connect_failed(exc)
                error = str(exc)
        if not error:
            say.connected()
            with state.lock:
                state.sessions[ACS] = True
            try:
                outcome = serve_session(ACS, conn, cfg, arn, backoff)
            finally:
                with state.lock:
                    state.sessions[ACS] = False
                conn.shutdown()
                say.session_done()  # startACSSession's deferred line, whatever ended it
            if outcome == "stopped":
                break
            if outcome == "silence":
                say.silence()
            error = "" if outcome == "disconnect" else outcome
        if "InactiveInstanceException" in error or error == "inactive":
            say.deregistered()
            lab_wait(INACTIVE_RECONNECT_SECONDS)
            continue
        if not error:
            say.valid_close()  # the periodic disconnect: dial again at once
            backoff.reset()
            continue
        delay = backoff.duration()
        say.closed(error, delay)
        if not lab_wait(delay):
            say.waited()
    say.ended()


def serve_session(kind: str, conn: WsConn, cfg: Config, arn: str, backoff: Backoff) -> str:
    """One session: ack heartbeats (ACS), publish metrics (TCS), close on silence.

    Returns why it ended: "stopped", "silence", "disconnect", "inactive" or "closed: ...".
    """
    started = lab_now()
    silence_at = started + HEARTBEAT_TIMEOUT + HEARTBEAT_JITTER * random.random()  # noqa: S311
    disconnect_at = started + DISCONNECT_TIMEOUT + DISCONNECT_JITTER * random.random()  # noqa: S311
    backoff_reset_at = started + HEARTBEAT_TIMEOUT + HEARTBEAT_JITTER * random.random()  # noqa: S311
    publish_at = started + METRICS_PUBLISH_SECONDS
    while True:
        if _stop.is_set():
            conn.close(1000, "agent stopping")
            return "stopped"
        if fault("ecs-hang"):
            # A wedged agent reads nothing and answers nothing; ACS ends the session for it.
            _stop.wait(0.5)
            if conn.closed:
                return "closed: while hung"
            continue
        now = lab_now()
        if now >= silence_at:
            if kind == TCS:
                log("warn", "TCS Connection hasn't had any activity for too long; closing")
            conn.close(1000, "")
            return "silence"
        if now >= disconnect_at:
            conn.close(1000, "")
            return "disconnect"
        if backoff_reset_at and now >= backoff_reset_at:
            backoff.reset()  # a session that lasted resets the reconnect backoff
            backoff_reset_at = 0.0
        if kind == TCS and now >= publish_at:
            publish_at = now + METRICS_PUBLISH_SECONDS
            try:
                conn.send_text(ws_message("PublishMetricsRequest", metrics_request(cfg, arn)))
            except WsClosed as exc:
                return f"closed: {exc}"
        wake = min(silence_at, disconnect_at, publish_at if kind == TCS else silence_at, now + 1.0)
        try:
            text = conn.receive(max(0.01, (wake - now) / _scale))
        except WsClosed as exc:
            return f"closed: {exc}"
        if text is None:
            continue
        silence_at = lab_now() + HEARTBEAT_TIMEOUT + HEARTBEAT_JITTER * random.random()  # noqa: S311
        try:
            doc = json.loads(text)
        except ValueError:
            continue
        kind_of = str(doc.get("type", "")) if isinstance(doc, dict) else ""
        body = doc.get("message") if isinstance(doc, dict) else None
        body = body if isinstance(body, dict) else {}
        if kind_of == "HeartbeatMessage" and kind == ACS:
            ack = {"messageId": str(body.get("messageId", ""))}
            try:
                conn.send_text(ws_message("HeartbeatAckRequest", ack))
            except WsClosed as exc:
                return f"closed: {exc}"
        elif kind_of == "InactiveInstanceException":
            log("warn", f"{kind.upper()}: container instance is inactive")
            return "inactive"
        elif kind_of.endswith("Exception") or kind_of == "CloseMessage":
            log("warn", f"{kind.upper()} sent {kind_of}: {body.get('message', '')}")


def metrics_request(cfg: Config, arn: str) -> dict[str, Any]:
    return {
        "metadata": {
            "cluster": cfg.cluster,
            "containerInstance": arn,
            "idle": True,
            "messageId": uuid4(),
            "fin": True,
        },
        "taskMetrics": [],
        "timestamp": time.time(),
    }


def ws_message(kind: str, body: dict[str, Any]) -> str:
    return compact({"type": kind, "message": body})


class WsClosed(Exception):
    pass


class WsConn:
    """The client half of RFC 6455 (masked frames out, plain frames in), stdlib only."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock, self.buffer = sock, bytearray(buffered)
        self.lock = threading.Lock()
        self.closed = False

    def send_text(self, text: str) -> None:
        self._send(0x1, text.encode())

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        size = len(payload)
        head = bytearray([0x80 | opcode])
        if size < 126:
            head.append(0x80 | size)
        elif size < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", size)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", size)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        with self.lock:
            if self.closed:
                raise WsClosed("connection closed")
            try:
                self.sock.sendall(bytes(head) + mask + masked)
            except OSError as exc:
                self.closed = True
                raise WsClosed(str(exc)) from None

    def receive(self, timeout: float) -> Optional[str]:
        """The next text message, None after `timeout` real seconds; WsClosed at the end."""
        deadline = time.monotonic() + timeout
        while True:
            frame = self._frame()
            if frame is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except (socket.timeout, TimeoutError):
                    return None
                except OSError as exc:
                    self.closed = True
                    raise WsClosed(str(exc)) from None
                if not chunk:
                    self.closed = True
                    raise WsClosed("end of stream")
                self.buffer += chunk
                continue
            opcode, payload = frame
            if opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                try:
                    self._send(0x8, payload[:2])
                except WsClosed:
                    pass
                self.shutdown()
                raise WsClosed(f"close {code} {payload[2:].decode('utf-8', 'replace')}".strip())
            elif opcode in (0x0, 0x1, 0x2):
                return payload.decode("utf-8", "replace")

    def _frame(self) -> Optional[tuple[int, bytes]]:
        buf = self.buffer
        if len(buf) < 2:
            return None
        opcode, size, at = buf[0] & 0x0F, buf[1] & 0x7F, 2
        if size == 126:
            if len(buf) < 4:
                return None
            size, at = struct.unpack("!H", bytes(buf[2:4]))[0], 4
        elif size == 127:
            if len(buf) < 10:
                return None
            size, at = struct.unpack("!Q", bytes(buf[2:10]))[0], 10
        if len(buf) < at + size:
            return None
        payload = bytes(buf[at : at + size])
        del buf[: at + size]
        return opcode, payload

    def close(self, code: int, reason: str) -> None:
        try:
            self._send(0x8, struct.pack("!H", code) + reason.encode())
        except WsClosed:
            pass
        self.shutdown()

    def shutdown(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def ws_connect(
    cfg: Config, creds: Credentials, endpoint: str, query: list[tuple[str, str]]
) -> WsConn:
    """The signed upgrade (GET /ws, SigV4 for service ecs), as wsclient.Connect sends it."""
    if not endpoint:
        raise AwsError("RequestError", "DiscoverPollEndpoint returned no endpoint")
    values = creds.get()
    if values is None:
        raise AwsError("NoCredentialProviders", "no valid providers in chain")
    base = endpoint if endpoint.endswith("/") else endpoint + "/"
    encoded = urllib.parse.urlencode(
        sorted(query), quote_via=lambda v, *_: urllib.parse.quote(v, safe="-_.~")
    )
    url = base + "ws?" + encoded
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "ws"):
        raise AwsError("RequestError", f"the lab double dials only plain ws://, not {url}")
    when = now_utc()
    headers = {"Host": parts.netloc, "X-Amz-Date": when.strftime("%Y%m%dT%H%M%SZ")}
    if values.get("token"):
        headers["X-Amz-Security-Token"] = values["token"]
    headers["Authorization"] = sign("GET", url, headers, b"", cfg.region, "ecs", values, when)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {parts.path}?{parts.query} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    lines += [
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        f"User-Agent: {VERSION_STRING}",
    ]
    try:
        sock = socket.create_connection(
            (parts.hostname or "", parts.port or 80), timeout=cfg.http_timeout
        )
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = sock.recv(65536)
            if not chunk:
                raise OSError("connection closed during the upgrade")
            raw += chunk
    except OSError as exc:
        raise AwsError(
            "RequestError", f"websocket client: unable to dial {parts.netloc}: {exc}"
        ) from None
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    answer = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    status = status_line.split(" ")[1] if " " in status_line else ""
    if status != "101":
        body = rest
        length = int(answer.get("content-length", "0") or 0)
        try:
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
        except OSError:
            pass
        sock.close()
        try:
            doc = json.loads(body or b"{}")
        except ValueError:
            doc = {}
        inner = doc.get("message") if isinstance(doc.get("message"), dict) else {}
        raise AwsError(
            str(doc.get("type") or f"HTTP{status}"), str(inner.get("message", status_line))
        )
    expect = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()  # noqa: S324
    if answer.get("sec-websocket-accept") != expect:
        sock.close()
        raise AwsError("RequestError", "websocket: bad handshake")
    return WsConn(sock, rest)


def _on_term(signum: int, _frame: Any) -> None:
    _stop.set()
    init_log("info", f"Received {signal.Signals(signum).name}, stopping the agent")


def action_start() -> int:
    global _scale
    _scale = time_scale()
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    init_log("info", "start")
    if crashes_here():
        init_log("error", f"lab fault ecs-crash: agent {AGENT_VERSION} exiting 1 after one second")
        time.sleep(1)
        return 1
    cfg = Config()
    # The agent container's environment is the two config files: proxies set there reach urllib.
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        if key in cfg.env:
            os.environ[key] = cfg.env[key]
    state = AgentState(cfg)
    server = start_introspection(cfg, state)
    delay = 0.5
    try:
        while True:
            init_log("info", "Starting Amazon Elastic Container Service Agent")
            code = run_agent(cfg, state)
            init_log("info", f"Agent exited with code {code}")
            if code == EXIT_TERMINAL:
                init_log("error", "agent exited with terminal exit code")
                return EXIT_TERMINAL
            if code == EXIT_OK or _stop.is_set():
                return EXIT_OK
            wait = delay * random.uniform(0.9, 1.1)  # noqa: S311 - jitter, not crypto
            init_log("warn", f"ECS Agent failed to start, retrying in {wait:.2f}s")
            if _stop.wait(wait):
                return EXIT_OK
            delay = min(15.0, delay * 2)  # ecs-init: 500 ms doubling to 15 s, forever
            cfg = Config()
            with state.lock:
                state.cluster = cfg.cluster
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def action_pre_start() -> int:
    init_log("info", "pre-start")
    for d in ("/var/log/ecs", "/var/lib/ecs/data", "/etc/ecs", "/var/cache/ecs"):
        path(d).mkdir(parents=True, exist_ok=True)
    return 0


def action_noop(name: str) -> int:
    # The real actions stop/clean the agent's Docker container; the double runs in-process and
    # systemd's SIGTERM to the main process stops it.
    init_log("info", name)
    return 0


ACTIONS = {
    "pre-start": "Prepare the ECS Agent for starting",
    "start": "Start the ECS Agent and wait for it to stop",
    "pre-stop": "Stop the ECS Agent",
    "stop": "Stop the ECS Agent",
    "post-stop": "Cleanup procedure for the ECS Agent",
    "reload-cache": "Reload the cached image of the ECS Agent into Docker",
    "version": "Print the version (anywhere-agent lab double)",
}


def usage() -> None:
    print(f"Usage: {sys.argv[0]} ACTION")
    print("")
    print(" Available actions:")
    for name, text in ACTIONS.items():
        print(f"  {name:<15}  {text}")
    print("")
    print(
        " This is a LAB DOUBLE of amazon-ecs-init for the anywhere-agent lab, not the AWS program."
    )


def main(argv: Optional[list[str]] = None) -> int:
    args = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    if any(a in ("-h", "--help", "-help") for a in (sys.argv[1:] if argv is None else argv)):
        usage()
        return 0
    if not args or args[0] not in ACTIONS:
        usage()
        return 1
    action = args[0]
    if action == "version":
        print(f"ecs-init version {AGENT_VERSION} ({LAB_LABEL})")
        return 0
    if action == "start":
        return action_start()
    if action == "pre-start":
        return action_pre_start()
    return action_noop(action)


if __name__ == "__main__":
    sys.exit(main())
