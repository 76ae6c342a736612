"""One conformance node: a mount namespace running the REAL agents, the cloud objects it joins,
and what a watched window of lab time saw."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import boto3
from botocore.config import Config
from real_agents import Binaries, Namespace, Trap, http_json, logfmt_events, wait_for

from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.operators import create_operator

REGION = "us-east-1"
CLUSTER = "conformance"
ROLE = "ecsAnywhereRole"
INTROSPECTION = "http://127.0.0.1:51678"
ECS_LOG = "/var/log/ecs/ecs-agent.log"
SSM_LOG = "/var/log/amazon/ssm/amazon-ssm-agent.log"
# The ECS agent's own words for its ACS session opening and closing (ecs-agent/acs/session).
ACS_UP = ("Connected to ACS endpoint",)
ACS_DOWN = ("ACS WebSocket connection closed", "Disconnected from ACS",
            "ACS session ended", "Failed to connect to ACS")


def anywhere_agent_argv() -> list[str]:
    """Our CLI, as installed in the interpreter's environment."""
    script = Path(sys.executable).parent / "anywhere-agent"
    return [str(script)] if script.exists() else [sys.executable, "-m", "anywhere_agent"]


@dataclass
class RealNode:
    """One node: the namespace, the agents in it, and the cloud objects it joins."""

    plane: ControlPlane
    ns: Namespace
    binaries: Binaries
    trap: Trap
    work: Path
    activation_id: str = ""
    activation_code: str = ""
    instance_id: str = ""
    operator: dict[str, str] = field(default_factory=dict)  # AWS_ACCESS_KEY_ID, ..._SECRET_...
    register_result: Optional[subprocess.CompletedProcess[bytes]] = None
    measured: dict[str, Any] = field(default_factory=dict)  # figures for the run's summary

    # -- clients and environments ---------------------------------------------------------

    def client(self, service: str) -> Any:
        """A client holding the operator's key (an IAM user with the registrar's policy)."""
        return boto3.client(
            service, endpoint_url=self.plane.url, region_name=REGION,
            aws_access_key_id=self.operator["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.operator["AWS_SECRET_ACCESS_KEY"],
            config=Config(retries={"mode": "standard", "max_attempts": 3}))

    def agent_env(self, **extra: str) -> dict[str, str]:
        """What the agents see: a clean environment, anything off-lab sent to the trap."""
        path = "/usr/sbin:/usr/bin:/sbin:/bin"
        if self.binaries.docker_dir is not None:
            path = f"{self.binaries.docker_dir}:{path}"
        no_proxy = "127.0.0.1,localhost,/var/run/docker.sock"
        env = {"PATH": path, "HOME": "/root", "LANG": "C.UTF-8",
               "HTTP_PROXY": self.trap.url, "HTTPS_PROXY": self.trap.url,
               "http_proxy": self.trap.url, "https_proxy": self.trap.url,
               "NO_PROXY": no_proxy, "no_proxy": no_proxy}
        env.update(extra)
        return env

    def operator_env(self) -> dict[str, str]:
        """The registrar's environment on an operator workstation, pointed at the lab."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(self.operator)
        env.update({"AWS_REGION": REGION, "AWS_ENDPOINT_URL": self.plane.url,
                    "AWS_CONFIG_FILE": str(self.work / "no-aws-config"),
                    "AWS_SHARED_CREDENTIALS_FILE": str(self.work / "no-aws-credentials")})
        return env

    def registrar(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*anywhere_agent_argv(), "registrar", *args],
                              env=self.operator_env(), capture_output=True, text=True,
                              timeout=timeout, check=False)

    def node_cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`anywhere-agent ...` inside the namespace, where the agents' files are."""
        env = self.agent_env()
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        done = self.ns.run([*anywhere_agent_argv(), *args], env, timeout=timeout)
        return subprocess.CompletedProcess(done.args, done.returncode,
                                           done.stdout.decode(errors="replace"),
                                           done.stderr.decode(errors="replace"))

    # -- the cloud side -------------------------------------------------------------------

    def prepare_cloud(self) -> None:
        """What an operator does first: the role and cluster, then one activation, through
        our registrar as an IAM user holding its published policy."""
        self.operator = create_operator(self.plane.url, "registrar").environment()
        ensured = self.registrar("ensure", "--role", ROLE, "--cluster", CLUSTER, "--json")
        if ensured.returncode != 0:
            raise RuntimeError(f"registrar ensure failed: {ensured.stderr.strip()}")
        codes = self.work / "activation.json"
        made = self.registrar("activate", "--count", "1", "--expires", "2h",
                              "--output", str(codes))
        if made.returncode != 0:
            raise RuntimeError(f"registrar activate failed: {made.stderr.strip()}")
        activation = json.loads(codes.read_text())["activations"][0]
        self.activation_id = activation["activation_id"]
        self.activation_code = activation["activation_code"]

    def instance_info(self) -> Optional[dict[str, Any]]:
        answer = self.client("ssm").describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [self.instance_id]}])
        found = answer.get("InstanceInformationList", [])
        return dict(found[0]) if found else None

    def container_instance(self) -> Optional[dict[str, Any]]:
        ecs = self.client("ecs")
        arns = ecs.list_container_instances(cluster=CLUSTER).get("containerInstanceArns", [])
        if not arns:
            return None
        described = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
        mine = [ci for ci in described.get("containerInstances", [])
                if ci.get("ec2InstanceId") == self.instance_id]
        return dict(mine[0]) if mine else None

    # -- the SSM agent --------------------------------------------------------------------

    def configure_ssm_agent(self) -> None:
        url = self.plane.url
        self.ns.write("/etc/amazon/ssm/amazon-ssm-agent.json", json.dumps({
            "Agent": {"Region": REGION, "SelfUpdate": False,
                      "TelemetryMetricsToCloudWatch": False},
            "Identity": {"ConsumptionOrder": ["OnPrem"]},
            "Ssm": {"Endpoint": url}, "Mds": {"Endpoint": url},
            "Mgs": {"Endpoint": url, "Region": REGION},
            "S3": {"Endpoint": url, "Region": REGION}, "Kms": {"Endpoint": url},
        }, indent=2))
        for name, binary in self.binaries.ssm.items():
            target = self.ns.path(f"/usr/bin/{name}")
            target.unlink(missing_ok=True)
            target.symlink_to(binary)

    def register(self) -> subprocess.CompletedProcess[bytes]:
        done = self.ns.run(["/usr/bin/amazon-ssm-agent", "-register", "-code",
                            self.activation_code, "-id", self.activation_id, "-region", REGION,
                            "-y"], self.agent_env(), timeout=120)
        self.register_result = done
        try:
            self.instance_id = json.loads(
                self.ns.path("/var/lib/amazon/ssm/registration").read_text())["ManagedInstanceID"]
        except (OSError, ValueError, KeyError):
            self.instance_id = ""
        return done

    def start_ssm_agent(self) -> int:
        return self.ns.spawn("amazon-ssm-agent", ["/usr/bin/amazon-ssm-agent"], self.agent_env())

    def role_credentials(self) -> dict[str, str]:
        parser = configparser.ConfigParser()
        try:
            parser.read_string(self.ns.path("/root/.aws/credentials").read_text())
        except (OSError, configparser.Error):
            return {}
        return dict(parser["default"]) if parser.has_section("default") else {}

    # -- Docker and the ECS agent ---------------------------------------------------------

    def start_dockerd(self) -> None:
        data = self.work / "docker-data"
        data.mkdir(exist_ok=True)
        self.ns.spawn("dockerd", [
            "dockerd", "--bridge=none", "--iptables=false", "--ip-forward=false",
            "--ip-masq=false", f"--data-root={data}", "--exec-root=/run/docker",
            "-H", "unix:///var/run/docker.sock"], self.agent_env())
        # /var/run is an absolute symlink, which would resolve outside the namespace from here.
        socket_path = self.ns.path("/run/docker.sock")
        if not wait_for(lambda: _docker_ping(str(socket_path)), timeout=60):
            raise RuntimeError(f"the private dockerd did not answer; see {self.work}/dockerd.out")

    def start_ecs_agent(self) -> int:
        assert self.binaries.ecs_agent is not None
        # ecs-init makes these before it starts the agent; the agent refuses to start without.
        for directory in ("/var/lib/ecs/data", "/var/log/ecs", "/etc/ecs"):
            self.ns.path(directory).mkdir(parents=True, exist_ok=True)
        env = self.agent_env(
            ECS_CLUSTER=CLUSTER, ECS_BACKEND_HOST=self.plane.url, AWS_DEFAULT_REGION=REGION,
            ECS_EXTERNAL="true", ECS_ENABLE_TASK_CPU_MEM_LIMIT="false",
            ECS_DATADIR="/var/lib/ecs/data", ECS_LOGFILE=ECS_LOG, ECS_LOGLEVEL="debug",
            ECS_CHECKPOINT="true", ECS_UPDATES_ENABLED="false",
            DOCKER_HOST="unix:///var/run/docker.sock")
        return self.ns.spawn("ecs-agent", [str(self.binaries.ecs_agent)], env)

    def introspection(self) -> Optional[dict[str, Any]]:
        return http_json(f"{INTROSPECTION}/v1/metadata")

    def acs_events(self) -> list[tuple[str, str]]:
        """(time, message) of the ECS agent's ACS session openings and closings, in order."""
        try:
            text = self.ns.path(ECS_LOG).read_text(errors="replace")
        except OSError:
            return []
        return list(logfmt_events(text, ACS_UP + ACS_DOWN))

    def acs_up(self) -> bool:
        events = self.acs_events()
        return bool(events) and events[-1][1].startswith(ACS_UP)

    def log_tail(self, inside: str, lines: int = 15) -> str:
        try:
            text = self.ns.path(inside).read_text(errors="replace")
        except OSError:
            return f"({inside} unreadable)"
        return "\n".join(text.splitlines()[-lines:])


def _docker_ping(socket_path: str) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(3)
            s.connect(socket_path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return b" 200 " in s.recv(64).split(b"\r\n", 1)[0]
    except OSError:
        return False


@dataclass(frozen=True)
class Sample:
    """One look at the host from the cloud side, at a lab time since the window opened."""

    at: float
    ping_status: Optional[str]
    agent_connected: Optional[bool]
    acs_up: bool
    fleet_row: Optional[dict[str, Any]]
    ssm_agent_alive: bool
    ecs_agent_alive: bool


@dataclass
class Window:
    """`LAB_MINUTES` of lab time watched with both agents running."""

    minutes: float
    wait_first: subprocess.CompletedProcess[str]
    samples: list[Sample]
    wait_last: subprocess.CompletedProcess[str]
    first_credentials: dict[str, str]

    def failures(self, check: Any) -> list[Sample]:
        return [s for s in self.samples if not check(s)]




LAB_MINUTES = float(os.environ.get("ANYWHERE_CONFORMANCE_MINUTES", "10"))
SAMPLE_EVERY = 30.0
