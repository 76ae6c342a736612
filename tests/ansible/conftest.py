"""Fixtures for the Ansible tests: the tools from the venv, a lab of our own, a runner."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ANSIBLE_DIR = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent
LAB_NAME = "aaans"
CLUSTER = "aaans"
HOSTS = 5
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)"
                   r"\s+skipped=(\d+)\s+rescued=(\d+)\s+ignored=(\d+)", re.M)


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not in the venv: pip install -e '.[ansible]'")
    return path


@dataclass
class Run:
    rc: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP as {host: {ok, changed, unreachable, failed, ...}}."""
        keys = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
        return {m.group(1): dict(zip(keys, map(int, m.groups()[1:])))
                for m in RECAP.finditer(self.output)}


def run_playbook(playbook: str, inventory: Path, extra: dict[str, Any], *args: str,
                 env: dict[str, str] | None = None, timeout: float = 900) -> Run:
    """ansible-playbook from ansible/ (so its ansible.cfg applies); stdout and stderr merged.

    The extra vars (they hold the controller's AWS keys) go in a 0600 file passed as
    `-e @FILE`, as an operator keeps them out of `ps`, never as JSON on the command line."""
    fd, vars_file = tempfile.mkstemp(prefix="anywhere-extra-vars.", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:  # mkstemp: 0600
            json.dump(extra, out)
        argv = [str(tool("ansible-playbook")), "-i", str(inventory),
                f"playbooks/{playbook}", "-e", f"@{vars_file}", *args]
        proc = subprocess.run(argv, cwd=ANSIBLE_DIR, capture_output=True, text=True,
                              timeout=timeout,
                              env={**os.environ,
                                   "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
                                   "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
                                   "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
                                   **(env or {})})
    finally:
        os.unlink(vars_file)
    return Run(proc.returncode, proc.stdout + proc.stderr)


def lab_vars(url: str, region: str, wheel: Path, group: str,
             controller: dict[str, str]) -> dict[str, Any]:
    """Extra vars for a lab rollout: the lab's agent.toml (lab.rollout.node_config) as role
    variables, the controller's registrar pointed at the lab control plane with the key of
    an IAM user holding iam/registrar.json (`controller`), as an operator would set it up."""
    from anywhere_agent.lab import rollout

    endpoints = {svc: url for svc in ("ssm", "ec2messages", "ssmmessages", "ecs", "sts")}
    return {
        "rollout_hosts": group,
        "ecs_anywhere_node_region": region,
        "ecs_anywhere_node_cluster": CLUSTER,
        "ecs_anywhere_node_package_source": "repo",
        "ecs_anywhere_node_docker_source": "none",
        "ecs_anywhere_node_join_timeout_seconds": 60,
        "ecs_anywhere_node_endpoints": endpoints,
        "ecs_anywhere_node_config_sections": {"supervise": {
            "interval_seconds": 5, "load_warn_per_cpu": rollout.LAB_LOAD_WARN_PER_CPU}},
        "ecs_anywhere_node_wheel": str(wheel),
        "ecs_anywhere_node_health_delay": 2,
        "ecs_anywhere_node_wait_timeout": "3m",
        "ecs_anywhere_node_controller_cli": str(BIN / "anywhere-agent"),
        "ecs_anywhere_node_controller_environment": {
            "AWS_ENDPOINT_URL": url, **controller, "AWS_REGION": region},
    }


@dataclass
class AnsibleLab:
    lab: Any
    inventory: Path
    extra: dict[str, Any]
    tmp: Path

    def run(self, playbook: str, *args: str, extra: dict[str, Any] | None = None,
            inventory: Path | None = None) -> Run:
        return run_playbook(playbook, inventory or self.inventory, {**self.extra, **(extra or {})},
                            *args, env={"TMPDIR": str(self.tmp)})

    def client(self, service: str) -> Any:
        from anywhere_agent.lab import rollout

        return rollout.lab_client(self.lab.control_plane_url(), service, self.lab.region)


@contextmanager
def lab_for_ansible(name: str, hosts: int, tmp: Path,
                    overrides: dict[str, Any] | None = None) -> Iterator[AnsibleLab]:
    """A lab of our own (`hosts` fresh hosts), its inventory, and the vars a rollout needs,
    the controller's registrar running as an IAM user holding iam/registrar.json."""
    tool("ansible-playbook")
    from anywhere_agent.lab.operators import create_operator
    from anywhere_agent.lab.orchestrator import Lab

    with Lab(name).running(hosts) as lab:
        inventory = tmp / "hosts.ini"
        inventory.write_text(lab.inventory())
        url = lab.control_plane_url()
        controller = create_operator(url, "registrar", lab.region).environment()
        # The inventory's group is the lab's full name ($ANYWHERE_LAB_SUFFIX included).
        extra = lab_vars(url, lab.region, lab.product_wheel(), lab.name.replace("-", "_"),
                         controller)
        yield AnsibleLab(lab, inventory, {**extra, **(overrides or {})}, tmp)


def rolled_out(alab: AnsibleLab, **extra: Any) -> AnsibleLab:
    """`alab` after rollout.yml joined every host (asserted)."""
    run = alab.run("rollout.yml", extra=extra)
    assert run.rc == 0, run.output[-6000:]
    return alab


@pytest.fixture(scope="module")
def ansible_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnsibleLab]:
    """A lab of our own (HOSTS fresh hosts), its inventory, and the vars a rollout needs."""
    with lab_for_ansible(LAB_NAME, HOSTS, tmp_path_factory.mktemp("ansible-lab")) as alab:
        yield alab
