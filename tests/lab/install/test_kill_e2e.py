"""Kills INSIDE install's steps on a real lab host, the way an operator's `kill -9 $P` lands:
inside a package install, inside `amazon-ssm-agent -register`, inside an ecs-init install. The
re-run converges to one registration with its full identity, clone detection keeps working,
and the register child (the one process that holds the activation code) dies with install."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from anywhere_agent.lab import rollout
from anywhere_agent.lab.orchestrator import Lab
from tests.lab.install.argv_watch import ArgvWatch

pytestmark = pytest.mark.lab

CLUSTER = "kill"
HOST = "n1"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(name="aakill").running(1) as lab:
        rollout.stage(lab, [HOST])
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 50)


def clean(lab: Lab) -> None:
    """A fresh host, and no earlier round's identities left in the cloud (a retired clone
    identity stays there, as it would for a real original host)."""
    lab.ssh(HOST, ["anywhere-agent", "uninstall", "--force"], check=False)
    lab.ssh(HOST, ["test", "!", "-e", "/var/lib/amazon/ssm/registration"])
    url = lab.control_plane_url()
    mis, cis = rollout.registrations(lab, HOST, CLUSTER)
    for arn in cis:
        rollout.lab_client(url, "ecs", lab.region).deregister_container_instance(
            cluster=CLUSTER, containerInstance=arn, force=True)
    for mi in mis:
        rollout.lab_client(url, "ssm", lab.region).deregister_managed_instance(InstanceId=mi)
    # Without Docker: each round uninstalls and installs again, and the rounds kill steps
    # that Docker does not change (the default Docker path has its own e2e).
    rollout.write_config(lab, HOST, rollout.node_config(lab.control_plane_url(), lab.region,
                                                        CLUSTER, "none"))


def host_pid_ns(lab: Lab) -> str:
    leader = lab.host(HOST).leader
    assert leader is not None
    return os.readlink(f"/proc/{leader.pid}/ns/pid")


def find(lab: Lab, *words: str, nth: int = 1, timeout: float = 120.0,
         seen: set[int] | None = None) -> int:
    """PID of the `nth` process in the host whose argv starts with `words` (matched in
    order, as whole arguments), polled every few milliseconds from the build machine."""
    ns, needle = host_pid_ns(lab), "\0".join(words).encode() + b"\0"
    found: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) in found:
                continue
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    raw = fh.read()
                if needle in raw + b"\0" and os.readlink(f"/proc/{name}/ns/pid") == ns:
                    found.append(int(name))
            except OSError:
                continue
        if len(found) >= nth:
            return found[nth - 1]
        time.sleep(0.002)
    raise AssertionError(f"no {' '.join(words)} (#{nth}) in {HOST} within {timeout} s")


def wait_gone(lab: Lab, program: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while lab.exec(HOST, ["pgrep", "-x", program], check=False).returncode == 0:
        assert time.monotonic() < deadline, f"{program} still runs after {timeout} s"
        time.sleep(0.2)


def start_install(lab: Lab, activation: Any) -> subprocess.Popen[bytes]:
    leader = lab.host(HOST).leader
    assert leader is not None
    argv = ["nsenter", "-t", str(leader.pid), "-a", "/usr/bin/env",
            "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "anywhere-agent", "install",
            "--json", "--activation-id", activation.activation_id, "--activation-code-file", "-"]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdin is not None
    proc.stdin.write(activation.code.reveal().encode())
    proc.stdin.close()
    return proc


def kill_install(lab: Lab, proc: subprocess.Popen[bytes]) -> float:
    """`kill -9` of install alone (not its process group), as in the issue; when it is dead."""
    os.kill(_install_pid(lab), signal.SIGKILL)
    proc.wait(timeout=60)
    return time.monotonic()


def _install_pid(lab: Lab) -> int:
    # The console script runs as `python3 /usr/local/bin/anywhere-agent install ...` or
    # `.../venv/bin/python3 .../anywhere-agent install`: match on the argument pair.
    ns = host_pid_ns(lab)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
            if os.readlink(f"/proc/{name}/ns/pid") != ns:
                continue
        except OSError:
            continue
        if b"install" in args and any(a.endswith(b"anywhere-agent") for a in args) and \
                b"nsenter" not in args[0]:
            return int(name)
    raise AssertionError("install is not running")


def identity(lab: Lab) -> dict[str, Any]:
    state = lab.exec(HOST, ["cat", "/var/lib/anywhere-agent/state.json"]).stdout
    return dict(json.loads(state).get("identity") or {})


def registration(lab: Lab) -> str:
    out = lab.exec(HOST, ["cat", "/var/lib/amazon/ssm/registration"], check=False).stdout
    return str(json.loads(out or b"{}").get("ManagedInstanceID", ""))


def test_register_child_dies_with_a_killed_install_and_no_other_process_holds_the_code(
        lab: Lab, activation: Any) -> None:
    clean(lab)
    code = activation.code.reveal()
    with ArgvWatch(code) as watch:
        proc = start_install(lab, activation)
        find(lab, "/usr/bin/amazon-ssm-agent", "-register")
        dead = kill_install(lab, proc)
        time.sleep(1.5)  # the old code's child lived on for 350-400 ms and finished the job
    assert watch.scans > 100, watch.scans
    assert watch.holders() == []
    # Death by SIGKILL is delivered to the child by the kernel (PR_SET_PDEATHSIG) at once.
    late = [(s.args, round(s.last - dead, 3)) for s in watch.seen_after(dead + 0.1)]
    assert late == []


def test_rerun_after_a_kill_inside_register_journals_the_full_identity_and_detects_clones(
        lab: Lab, activation: Any) -> None:
    clean(lab)
    proc = start_install(lab, activation)
    find(lab, "/usr/bin/amazon-ssm-agent", "-register")
    kill_install(lab, proc)
    code, result, err = rollout.install(lab, HOST, activation)
    assert code == 0, err
    ident = identity(lab)
    mi = registration(lab)
    assert mi.startswith("mi-") and result["managed_instance_id"] == mi
    assert ident["managed_instance_id"] == mi and ident["region"] == lab.region
    machine = lab.exec(HOST, ["cat", "/etc/machine-id"]).stdout.decode().strip()
    assert ident["machine_id"] == machine
    # The host is then cloned (a new machine-id): the next run must re-register, not say
    # "already converged".
    lab.exec(HOST, ["dd", "of=/etc/machine-id", "status=none"],
             input=(os.urandom(16).hex() + "\n").encode())
    code, result, err = rollout.install(lab, HOST, activation)
    assert code == 0, err
    assert result["previous_identity"]["managed_instance_id"] == mi
    assert "cloned" in result["previous_identity"]["retired_reason"]
    assert registration(lab) not in ("", mi)


@pytest.mark.parametrize(("inside", "words", "nth"), [
    ("ssm-agent-package", ("apt-get", "install"), 1),
    ("ssm-registration", ("/usr/bin/amazon-ssm-agent", "-register"), 1),
    # No ecs-init-package case: ecs-init now comes in ssm-agent-package's one apt transaction,
    # so a fresh install runs one `apt-get install`, and the first case covers it.
])
def test_kill_inside_a_step_then_rerun_converges_to_one_registration(
        lab: Lab, activation: Any, inside: str, words: tuple[str, ...], nth: int) -> None:
    clean(lab)
    with ArgvWatch(activation.code.reveal()) as watch:
        proc = start_install(lab, activation)
        find(lab, *words, nth=nth)
        kill_install(lab, proc)
        # An orphaned apt-get still holds the dpkg lock; the operator's re-run comes after it.
        wait_gone(lab, "apt-get")
        code, _, err = rollout.install(lab, HOST, activation)
    assert code == 0, (inside, err)
    assert watch.holders() == [], inside
    mis, cis = rollout.registrations(lab, HOST, CLUSTER)
    assert len(mis) == 1 and len(cis) == 1, (inside, mis, cis)
    ident = identity(lab)
    assert ident["managed_instance_id"] == registration(lab) == mis[0], inside
    assert ident.get("machine_id") and ident.get("region") == lab.region, inside
