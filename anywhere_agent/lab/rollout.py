"""Roll the node agent onto lab hosts over SSH, the way an operator would (used by the demo).

The activation code travels on ssh's standard input into `install --activation-code-file -`;
it is never on any command line or in any file on the hosts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config

from anywhere_agent.aws.clients import AwsSettings, Clients
from anywhere_agent.errors import LabError
from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.registrar import ensure
from anywhere_agent.secret import Secret

LOG = logging.getLogger(__name__)
ROLE = "ecsAnywhereRole"


def root_clients(url: str, region: str) -> Clients:
    """The product's client factory holding the lab account's root key."""
    session: Any = boto3.session.Session(aws_access_key_id="lab",
                                         aws_secret_access_key="lab",  # noqa: S106 - lab only
                                         region_name=region)
    return Clients(AwsSettings(region=region, endpoints={"default": url}), session=session)


def lab_client(url: str, service: str, region: str) -> Any:
    """A boto3 client for the lab control plane holding the lab account's root key."""
    session: Any = boto3.session.Session(aws_access_key_id="lab",
                                         aws_secret_access_key="lab",  # noqa: S106 - lab only
                                         region_name=region)
    return session.client(service, endpoint_url=url, config=botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 5}))


@dataclass(frozen=True)
class LabActivation:
    activation_id: str
    code: Secret


# Lab hosts share the build machine's CPUs and read its load average (/proc/loadavg is not
# namespaced): ten hosts installing at once on 2 cores is a load the host itself did not make.
# The load check stays on, with a threshold for a machine shared by the whole lab.
LAB_LOAD_WARN_PER_CPU = 32.0


def node_config(url: str, region: str, cluster: str, docker_source: str = "distro") -> str:
    """agent.toml for a lab host: the lab's apt repo, Docker from the distribution (through the
    lab's Debian proxy) unless `docker_source` says otherwise, every endpoint on the lab."""
    return (f'region = "{region}"\ncluster = "{cluster}"\npackage_source = "repo"\n'
            f'docker_source = "{docker_source}"\njoin_timeout_seconds = 60\n\n'
            f'[endpoints]\nssm = "{url}"\nec2messages = "{url}"\nssmmessages = "{url}"\n'
            f'ecs = "{url}"\nsts = "{url}"\n\n[supervise]\ninterval_seconds = 5\n'
            f'load_warn_per_cpu = {LAB_LOAD_WARN_PER_CPU}\n')


def prepare(url: str, region: str, cluster: str, count: int) -> LabActivation:
    """Role, cluster and one activation for `count` hosts on the lab control plane."""
    # Built by the registrar's own code, so hosts get exactly what `registrar ensure` gives
    # them on AWS: the two managed policies and iam/host-role-extra.json.
    ensure.ensure(root_clients(url, region), ROLE, cluster)
    resp = lab_client(url, "ssm", region).create_activation(
        IamRole=ROLE, RegistrationLimit=max(1, count), DefaultInstanceName="lab")
    return LabActivation(resp["ActivationId"], Secret(resp["ActivationCode"]))


def write_config(lab: Lab, host: str, text: str) -> None:
    lab.ssh(host, ["mkdir", "-p", "/etc/anywhere-agent"])
    lab.ssh(host, ["dd", "of=/etc/anywhere-agent/agent.toml", "status=none"],
            input=text.encode())


def install(lab: Lab, host: str, activation: LabActivation | None, *,
            extra: tuple[str, ...] = (), via: str = "ssh") -> tuple[int, dict[str, Any], str]:
    """Run `anywhere-agent install --json` on `host` over ssh (or nsenter with via="exec");
    returns (exit code, result, stderr)."""
    argv = ["anywhere-agent", "install", "--json", *extra]
    data = b""
    if activation is not None:
        argv += ["--activation-id", activation.activation_id, "--activation-code-file", "-"]
        data = activation.code.reveal().encode()
    run = lab.ssh if via == "ssh" else lab.exec
    proc = run(host, argv, input=data, check=False)
    try:
        result = json.loads(proc.stdout.decode() or "{}")
    except ValueError:
        result = {"raw": proc.stdout.decode()}
    return proc.returncode, result, proc.stderr.decode()


def stage(lab: Lab, hosts: Sequence[str], cluster: str | None = None,
          docker_source: Mapping[str, str] | None = None) -> None:
    """The product on each of `hosts` and, given a cluster, the lab's agent.toml for it
    (Docker from the distribution unless `docker_source` names the host)."""
    url = lab.control_plane_url() if cluster is not None else ""
    for name in hosts:
        lab.install_product(name)
        if cluster is not None:
            source = (docker_source or {}).get(name, "distro")
            write_config(lab, name, node_config(url, lab.region, cluster, source))


def roll_out(lab: Lab, cluster: str = "lab", hosts: list[str] | None = None) -> dict[str, Any]:
    """Install the product and join every host; returns per-host results."""
    url = lab.control_plane_url()
    names = hosts or [h.name for h in lab.hosts()]
    activation = prepare(url, lab.region, cluster, len(names))
    # Docker from the distribution, as on customers' servers; with several hosts the last
    # keeps docker_source = none, so that path is shown too.
    no_docker = {names[-1]: "none"} if len(names) > 1 else {}

    def one(name: str) -> tuple[str, dict[str, Any]]:
        stage(lab, [name], cluster, no_docker)
        code, result, err = install(lab, name, activation)
        return name, {"exit_code": code, "result": result, "stderr_tail": err[-400:]}

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, names))


def registrations(lab: Lab, host: str, cluster: str) -> tuple[list[str], list[str]]:
    """What the control plane holds for `host`: the managed instances whose ComputerName is
    its hostname, and the ACTIVE container instances of `cluster` that are theirs."""
    url = lab.control_plane_url()
    ssm = lab_client(url, "ssm", lab.region)
    ecs = lab_client(url, "ecs", lab.region)
    name = lab.exec(host, ["hostname"]).stdout.decode().strip()
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    mine = [i["InstanceId"] for i in infos if i.get("ComputerName", "").split(".")[0] == name]
    arns = ecs.list_container_instances(cluster=cluster, status="ACTIVE")["containerInstanceArns"]
    cis = ecs.describe_container_instances(cluster=cluster, containerInstances=arns)[
        "containerInstances"] if arns else []
    return mine, [c["containerInstanceArn"] for c in cis if c.get("ec2InstanceId") in mine]


def fleet_rows(lab: Lab, cluster: str = "lab") -> list[dict[str, Any]]:
    """One row per managed instance joined with its container instance (demo's table)."""
    url = lab.control_plane_url()
    ssm = lab_client(url, "ssm", lab.region)
    ecs = lab_client(url, "ecs", lab.region)
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    by_mi: dict[str, dict[str, Any]] = {}
    if arns:
        for ci in ecs.describe_container_instances(cluster=cluster,
                                                   containerInstances=arns)["containerInstances"]:
            by_mi[ci.get("ec2InstanceId", "")] = ci
    rows = []
    for info in infos:
        ci = by_mi.get(info["InstanceId"], {})
        rows.append({"name": info.get("ComputerName") or info.get("Name"),
                     "managed_instance": info["InstanceId"], "ping": info.get("PingStatus"),
                     "ecs_status": ci.get("status", "-"),
                     "connected": ci.get("agentConnected", "-")})
    return sorted(rows, key=lambda r: str(r["name"]))


def demo(lab: Lab, hosts: int, cluster: str) -> dict[str, Any]:
    """`lab demo`: a lab of `hosts` hosts (reused when up at that size), the product rolled
    onto each, then the fleet table and every host's one-line health."""
    current = lab.status()
    if current.get("state") != "up" or len(current.get("hosts", [])) != hosts:
        lab.up(hosts)  # cleans a crashed or differently sized lab of this name first
    results = roll_out(lab, cluster)
    failed = {h: r for h, r in results.items() if r["exit_code"] != 0}
    if failed:
        first = next(iter(failed.items()))
        raise LabError(f"install failed on {', '.join(sorted(failed))}: "
                       f"{first[1]['stderr_tail'].strip().splitlines()[-1:]}",
                       f"ssh into {first[0]} and run `anywhere-agent status`")
    health = {}
    for host in sorted(results):
        proc = lab.ssh(host, ["anywhere-agent", "health", "--format", "nagios"], check=False)
        health[host] = proc.stdout.decode().strip().splitlines()[0] if proc.stdout else ""
    return {"fleet": fleet_rows(lab, cluster), "health": health,
            "installs": {h: r["result"] for h, r in results.items()}}
