"""Install end to end on real systemd lab hosts against the lab control plane."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.errors import ExitCode
from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab
from tests.lab.install.argv_watch import ArgvWatch

pytestmark = pytest.mark.lab

CLUSTER = "e2e"
# The lab tier's default is Docker from the distribution; n2, whose test kills install at
# every step boundary, keeps docker_source = none (that path stays tested, the loop stays short).
DOCKER_SOURCE = {"n2": "none"}


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aae2e").running(4) as lab:
        rollout.stage(lab, ["n1", "n2", "n3", "n4"], CLUSTER, DOCKER_SOURCE)
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 50)


def clients(lab: Lab) -> tuple[Any, Any]:
    url = lab.control_plane_url()
    return (rollout.lab_client(url, "ssm", lab.region), rollout.lab_client(url, "ecs", lab.region))


def identity(lab: Lab, host: str) -> str:
    out = lab.exec(host, ["cat", "/var/lib/amazon/ssm/registration"], check=False).stdout
    return str(json.loads(out or b"{}").get("ManagedInstanceID", ""))


def unit_fingerprint(lab: Lab, host: str) -> dict[str, str]:
    out = {}
    for unit in ("ecs", "amazon-ssm-agent", "anywhere-agent"):
        proc = lab.exec(host, ["systemctl", "show", unit, "-p", "MainPID,NRestarts,"
                               "ActiveEnterTimestamp"], check=False)
        out[unit] = proc.stdout.decode()
    return out


def test_fresh_install_joins_and_rerun_changes_nothing(lab: Lab, activation: Any) -> None:
    code, result, err = rollout.install(lab, "n1", activation)
    assert code == 0, err
    assert result["changed"] is True
    assert result["container_instance_arn"].startswith("arn:aws:ecs:")
    assert result["cloud_verified"] is True
    before = unit_fingerprint(lab, "n1")
    code, again, err = rollout.install(lab, "n1", None)
    assert code == 0, err
    assert again["changed"] is False, again["changes"]
    assert unit_fingerprint(lab, "n1") == before
    mis, cis = rollout.registrations(lab, "n1", CLUSTER)
    assert len(mis) == 1 and len(cis) == 1


def test_kill_at_step_boundaries_converges_to_one_registration(lab: Lab,
                                                               activation: Any) -> None:
    for boundary in ("ssm-agent-package", "ssm-registration", "ssm-agent-service",
                     "ecs-init-package", "ecs-config", "ecs-service"):
        # Each round starts from a clean host, so the kill lands on a step that really acts.
        lab.ssh("n2", ["anywhere-agent", "uninstall", "--force"], check=False)
        lab.ssh("n2", ["test", "!", "-e", "/var/lib/amazon/ssm/registration"])
        rollout.write_config(lab, "n2", rollout.node_config(lab.control_plane_url(), lab.region,
                                                            CLUSTER, DOCKER_SOURCE["n2"]))
        argv = [*lab_nsenter(lab, "n2"), "anywhere-agent", "install", "--activation-id",
                activation.activation_id, "--activation-code-file", "-"]
        # Every command line on the machine is sampled throughout the run and the re-run, not
        # once before install acts: only AWS's register child may ever hold the code.
        with ArgvWatch(activation.code.reveal()) as watch:
            proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, start_new_session=True)
            assert proc.stdin is not None and proc.stderr is not None
            proc.stdin.write(activation.code.reveal().encode())
            proc.stdin.close()
            killed = False
            for line in proc.stderr:
                if line.startswith(f"step={boundary} ".encode()):
                    os.killpg(proc.pid, 9)
                    killed = b"result=changed" in line
                    break
            proc.wait(timeout=120)
            assert killed, f"install never acted at {boundary}"
            code, _, err = rollout.install(lab, "n2", activation)
        assert watch.scans > 10 and watch.holders() == [], (boundary, watch.holders())
        assert code == 0, (boundary, err)
        mis, cis = rollout.registrations(lab, "n2", CLUSTER)
        assert len(mis) == 1 and len(cis) == 1, (boundary, mis, cis)


def lab_nsenter(lab: Lab, host: str) -> list[str]:
    leader = lab.host(host).leader
    assert leader is not None
    return ["nsenter", "-t", str(leader.pid), "-a", "/usr/bin/env",
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"]


def test_cloned_host_ends_with_its_own_identity(lab: Lab, activation: Any) -> None:
    code, _, err = rollout.install(lab, "n3", activation)
    assert code == 0, err
    original = identity(lab, "n3")
    # The clone: n4 gets n3's registration, journal and agent state, but its own machine-id.
    tar = lab.exec("n3", ["tar", "-C", "/", "-cf", "-", "var/lib/amazon/ssm", "root/.aws",
                          "var/lib/anywhere-agent/state.json", "var/lib/ecs"]).stdout
    lab.exec("n4", ["tar", "-C", "/", "-xf", "-"], input=tar)
    code, result, err = rollout.install(lab, "n4", activation)
    assert code == 0, err
    assert identity(lab, "n4") != original
    assert result["previous_identity"]["managed_instance_id"] == original
    assert identity(lab, "n3") == original
    ssm, _ = clients(lab)
    online = {i["InstanceId"] for i in
              ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]}
    assert {original, identity(lab, "n4")} <= online


def test_activation_code_appears_in_none_of_our_files_or_logs(lab: Lab, activation: Any) -> None:
    code = activation.code.reveal()
    for cmd in (["journalctl", "--no-pager", "-o", "cat"],
                ["grep", "-rl", code, "/var/lib/anywhere-agent", "/etc/anywhere-agent",
                 "/etc/ecs", "/var/lib/ecs", "/etc/systemd/system"]):
        out = lab.exec("n1", cmd, check=False).stdout.decode()
        assert code not in out


def test_bad_inputs_fail_with_their_exit_code_and_leave_the_host_untouched(
        lab: Lab, activation: Any) -> None:
    url = lab.control_plane_url()
    host = "n4"
    lab.ssh(host, ["anywhere-agent", "uninstall", "--force"], check=False)
    rollout.write_config(lab, host, rollout.node_config(url, lab.region, CLUSTER))
    expired = rollout.prepare(url, lab.region, CLUSTER, 1)
    lab.fault("expire-activation", activation_id=expired.activation_id)
    cases = [
        (expired, (), ExitCode.ACTIVATION),
        (rollout.LabActivation(activation.activation_id, type(activation.code)("WRONGCODE0123")),
         (), ExitCode.ACTIVATION),
        (activation, ("--cluster", "no-such-cluster"), ExitCode.CLOUD),
        # Another region, with that region's endpoints (as on AWS): the registration itself
        # fails there, since activations are regional.
        (activation, ("--region", "eu-west-1"), ExitCode.CLOUD),
    ]
    for act, extra, want in cases:
        region = extra[1] if extra[:1] == ("--region",) else lab.region
        rollout.write_config(lab, host, rollout.node_config(lab.region_url(region), region,
                                                            CLUSTER))
        code, result, err = rollout.install(lab, host, act, extra=extra)
        assert code == want, (extra, result, err)
        if region != lab.region:
            assert "SSM registration failed (wrong region)" in json.dumps(result), result
            assert lab.exec(host, ["test", "-e", "/var/lib/amazon/ssm/registration"],
                            check=False).returncode != 0
        pkgs = lab.exec(host, ["dpkg-query", "-W", "-f=${db:Status-Status} ${Package}\n",
                               "amazon-ssm-agent", "amazon-ecs-init"], check=False).stdout
        assert b"installed" not in pkgs.replace(b"not-installed", b""), (extra, pkgs)
        assert act.code.reveal() not in json.dumps(result) + err
    # Not root: preflight refuses before anything is touched.
    proc = lab.exec(host, ["runuser", "-u", "nobody", "--", "/opt/anywhere-agent/venv/bin/"
                           "anywhere-agent", "install", "--json", "--config",
                           "/tmp/agent.toml", "--region", lab.region], check=False)
    assert proc.returncode == ExitCode.PREFLIGHT, proc.stdout + proc.stderr
    assert b"root" in proc.stdout
    # Unreachable endpoint: preflight refuses before anything is touched.
    rollout.write_config(lab, host, rollout.node_config("http://127.0.0.1:9", lab.region,
                                                        CLUSTER))
    code, result, _ = rollout.install(lab, host, activation)
    assert code == ExitCode.PREFLIGHT, result
    rollout.write_config(lab, host, rollout.node_config(url, lab.region, CLUSTER))


def test_host_role_without_describe_rights_installs_and_says_what_it_could_not_verify(
        lab: Lab, activation: Any) -> None:
    # The two managed policies grant no Describe* calls: install must still converge, relying
    # on introspection, and report what it could not verify instead of failing.
    for op in ("DescribeClusters", "DescribeContainerInstances"):
        lab.fault("deny", service="ecs", operation=op)
    lab.fault("deny", service="ssm", operation="DescribeInstanceInformation")
    try:
        lab.ssh("n3", ["anywhere-agent", "uninstall", "--force"], check=False)
        rollout.write_config(lab, "n3", rollout.node_config(lab.control_plane_url(), lab.region,
                                                            CLUSTER))
        code, result, err = rollout.install(lab, "n3", activation)
        assert code == 0, err
        assert result["cloud_verified"] is False
        assert result["container_instance_arn"].startswith("arn:aws:ecs:")
        assert any("could not verify" in n for n in result["notes"])
    finally:
        for op in ("DescribeClusters", "DescribeContainerInstances"):
            lab.fault("deny", on=False, service="ecs", operation=op)
        lab.fault("deny", on=False, service="ssm", operation="DescribeInstanceInformation")


def test_uninstall_leaves_no_registration_on_either_side(lab: Lab, activation: Any) -> None:
    code, _, err = rollout.install(lab, "n1", activation)
    assert code == 0, err
    mi = identity(lab, "n1")
    # n1 runs Docker and a lab task: uninstall refuses until the operator has drained it.
    proc = lab.ssh("n1", ["anywhere-agent", "uninstall", "--json"], check=False)
    assert proc.returncode == ExitCode.REFUSED, proc.stdout + proc.stderr
    drained = subprocess.run(
        [str(Path(sys.executable).parent / "anywhere-agent"), "registrar", "drain", "--hosts", mi,
         "--cluster", CLUSTER, "--region", lab.region, "--timeout", "90s", "--interval", "1s"],
        env={**os.environ, "AWS_ENDPOINT_URL": lab.control_plane_url(),
             "AWS_ACCESS_KEY_ID": "lab", "AWS_SECRET_ACCESS_KEY": "lab"},
        capture_output=True, text=True, timeout=120, check=False)
    assert drained.returncode == 0, drained.stdout + drained.stderr
    proc = lab.ssh("n1", ["anywhere-agent", "uninstall", "--json"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ssm, ecs = clients(lab)
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    assert mi not in {i["InstanceId"] for i in infos}
    arns = ecs.list_container_instances(cluster=CLUSTER, status="ACTIVE")["containerInstanceArns"]
    if arns:
        cis = ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
        assert mi not in {c.get("ec2InstanceId") for c in cis["containerInstances"]}
    assert lab.exec("n1", ["test", "-e", "/var/lib/anywhere-agent"], check=False).returncode != 0
