"""The ECS agent double: config precedence, registration call, exit codes, introspection, faults."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from doubles_helpers import (
    CI_ARN,
    ECS,
    PYTHON,
    FakePlane,
    Processes,
    double_env,
    free_port,
    wait_until,
)

CREDS = (
    "[default]\naws_access_key_id = AKIALABTEST\naws_secret_access_key = s3cr3t\n"
    "aws_session_token = tok\n"
)


def _host(
    root: Path,
    plane: FakePlane,
    cluster: str = "lab",
    extra_user: str = "",
    creds: bool = True,
    lab: dict[str, Any] | None = None,
) -> None:
    (root / "var/lib/ecs").mkdir(parents=True, exist_ok=True)
    (root / "etc/ecs").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/ecs/ecs.config").write_text(
        f"AWS_DEFAULT_REGION=us-east-1\nECS_EXTERNAL=true\nECS_BACKEND_HOST={plane.url}\n"
    )
    (root / "etc/ecs/ecs.config").write_text(f"ECS_CLUSTER={cluster}\n{extra_user}")
    if lab is not None:
        (root / "etc/ecs/lab-double.json").write_text(json.dumps(lab))
    if creds:
        _write_creds(root)


def _write_creds(root: Path) -> None:
    f = root / "root/.aws/credentials"
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(CREDS)


class Ecs:
    def __init__(self, root: Path, procs: Processes, tmp: Path) -> None:
        self.port = free_port()
        self.env = double_env(
            root,
            ANYWHERE_LAB_ECS_INTROSPECTION_PORT=str(self.port),
            ANYWHERE_LAB_ECS_HEARTBEAT_SECONDS="0.3",
            ANYWHERE_LAB_ECS_CREDS_REREAD_SECONDS="0.2",
        )
        self.procs, self.tmp = procs, tmp

    def start(self) -> subprocess.Popen[str]:
        return self.procs.start(
            [PYTHON, str(ECS), "start"], self.env, self.tmp / f"ecs-{time.time()}.out"
        )

    def get(self, path: str, timeout: float = 2.0) -> tuple[int, Any]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def metadata(self) -> dict[str, Any] | None:
        try:
            return self.get("/v1/metadata")[1]  # type: ignore[no-any-return]
        except OSError:
            return None


def test_the_agent_registers_with_the_real_body_signed_with_the_shared_credentials(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    extra = 'ECS_INSTANCE_ATTRIBUTES={"rack": "r7"}\nECS_CONTAINER_INSTANCE_TAGS={"team": "edge"}\n'
    _host(lab_root, fake_plane, extra_user=extra)
    Ecs(lab_root, processes, tmp_path).start()
    [rci] = fake_plane.wait_for("RegisterContainerInstance")
    assert rci.target == "AmazonEC2ContainerServiceV20141113.RegisterContainerInstance"
    assert re.match(
        r"AWS4-HMAC-SHA256 Credential=AKIALABTEST/\d{8}/us-east-1/ecs/aws4_request, "
        r"SignedHeaders=\S+, Signature=[0-9a-f]{64}$",
        rci.headers["authorization"],
    )
    assert rci.headers["x-amz-security-token"] == "tok"
    body = rci.json
    assert set(body) == {
        "attributes",
        "clientToken",
        "cluster",
        "instanceIdentityDocument",
        "instanceIdentityDocumentSignature",
        "totalResources",
        "tags",
    }
    assert body["cluster"] == "lab"
    assert (
        body["instanceIdentityDocument"] == "" and body["instanceIdentityDocumentSignature"] == ""
    )
    attrs = {a["name"]: a.get("value") for a in body["attributes"]}
    assert len(attrs) >= 45
    assert "ecs.capability.external" in attrs
    arch = {"x86_64": "x86_64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    assert attrs["ecs.os-type"] == "linux" and attrs["ecs.os-family"] == "LINUX"
    assert attrs["ecs.os-type-detailed"] == "debian_12" and attrs["ecs.cpu-architecture"] == arch
    assert attrs["rack"] == "r7"
    assert body["tags"] == [{"key": "team", "value": "edge"}]
    resources = {r["name"]: r for r in body["totalResources"]}
    assert set(resources) == {"CPU", "MEMORY", "PORTS", "PORTS_UDP"}
    assert resources["CPU"]["type"] == "INTEGER" and resources["CPU"]["integerValue"] >= 1024
    assert resources["MEMORY"]["integerValue"] > 0
    assert "51678" in resources["PORTS"]["stringSetValue"]
    [dpe] = fake_plane.wait_for("DiscoverPollEndpoint")
    assert dpe.json == {"cluster": "lab", "containerInstance": CI_ARN}
    # Then signed upgrades to ACS and TCS, re-dialled with backoff while they are refused;
    # DiscoverPollEndpoint is not asked again (the real agent caches it for 12 hours).
    wait_until(lambda: len(fake_plane.dials()) >= 4, timeout=10, what="ACS/TCS re-dials")
    queries = [urllib.parse.parse_qs(urllib.parse.urlsplit(d.path).query)
               for d in fake_plane.dials()]
    acs = [q for q in queries if "containerInstanceArn" in q]
    assert acs and acs[0]["protocolVersion"] == ["2"] and acs[0]["seqNum"] == ["1"]
    assert acs[0]["containerInstanceArn"] == [CI_ARN] and acs[0]["agentVersion"] == ["1.105.1"]
    assert any(q.get("containerInstance") == [CI_ARN] for q in queries)  # TCS
    assert all("/us-east-1/ecs/" in d.headers["authorization"] for d in fake_plane.dials())
    assert len(fake_plane.calls("DiscoverPollEndpoint")) == 1


def test_introspection_answers_null_until_registered_then_the_arn(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, creds=False)
    ecs = Ecs(lab_root, processes, tmp_path)
    started = time.monotonic()
    ecs.start()
    meta = wait_until(ecs.metadata, timeout=5, what="introspection")
    assert time.monotonic() - started < 2.5
    assert meta == {
        "Cluster": "lab",
        "ContainerInstanceArn": None,
        "Version": "Amazon ECS Agent - v1.105.1 (lab double)",
    }
    _write_creds(lab_root)  # as the SSM agent would; the agent restarts and registers
    meta = wait_until(
        lambda: (m := ecs.metadata()) and m["ContainerInstanceArn"] and m,
        timeout=15,
        what="registration",
    )
    assert meta["ContainerInstanceArn"] == CI_ARN
    state = json.loads((lab_root / "var/lib/ecs/data/agent.db").read_text())
    assert state["ContainerInstanceArn"] == CI_ARN and state["Cluster"] == "lab"


TASK = {
    "Arn": "arn:aws:ecs:us-east-1:123456789012:task/lab/abc",
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "Family": "web",
    "Version": "3",
    "Containers": [
        {
            "DockerId": "0123456789abcdef0123",
            "DockerName": "ecs-web-3-web",
            "Name": "web",
            "Image": "nginx",
            "ImageID": "sha256:1",
        }
    ],
}


def test_the_tasks_endpoint_has_the_real_shapes_and_error_codes(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, lab={"tasks": [TASK]})
    ecs = Ecs(lab_root, processes, tmp_path)
    ecs.start()
    wait_until(ecs.metadata, what="introspection")
    assert ecs.get("/v1/tasks") == (200, {"Tasks": [TASK]})
    assert ecs.get(f"/v1/tasks?taskarn={TASK['Arn']}") == (200, TASK)
    assert ecs.get("/v1/tasks?dockerid=0123456789ab") == (200, TASK)  # short ID
    assert ecs.get("/v1/tasks?dockerid=0123456789abcdef0123") == (200, TASK)
    empty = {"Arn": "", "KnownStatus": "", "Family": "", "Version": "", "Containers": None}
    assert ecs.get("/v1/tasks?taskarn=arn:nope") == (404, empty)
    assert ecs.get("/v1/tasks?dockerid=nope") == (404, empty)
    assert ecs.get(f"/v1/tasks?taskarn={TASK['Arn']}&dockerid=x") == (400, empty)


def test_no_tasks_is_an_empty_list(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane)
    ecs = Ecs(lab_root, processes, tmp_path)
    ecs.start()
    wait_until(ecs.metadata, what="introspection")
    assert ecs.get("/v1/tasks") == (200, {"Tasks": []})


def test_the_agent_exits_5_when_the_answer_does_not_echo_the_attributes(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    fake_plane.echo_attributes = False
    _host(lab_root, fake_plane)
    proc = Ecs(lab_root, processes, tmp_path).start()
    assert proc.wait(timeout=15) == 5
    log = (lab_root / "var/log/ecs/ecs-agent.log").read_text()
    assert "Attribute validation failed" in log
    assert (
        "agent exited with terminal exit code"
        in (lab_root / "var/log/ecs/ecs-init.log").read_text()
    )


def test_etc_ecs_config_overrides_var_lib_ecs_config(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, cluster="from-etc")
    with (lab_root / "var/lib/ecs/ecs.config").open("a") as fh:
        fh.write("ECS_CLUSTER=from-var-lib\n")
    Ecs(lab_root, processes, tmp_path).start()
    [rci] = fake_plane.wait_for("RegisterContainerInstance")
    assert rci.json["cluster"] == "from-etc"
    assert "/us-east-1/ecs/" in rci.headers["authorization"]  # region from /var/lib/ecs/ecs.config


def test_a_restart_reregisters_with_the_stored_arn_and_no_custom_attributes(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, extra_user='ECS_INSTANCE_ATTRIBUTES={"rack": "r7"}\n')
    ecs = Ecs(lab_root, processes, tmp_path)
    first = ecs.start()
    fake_plane.wait_for("DiscoverPollEndpoint")
    assert processes.stop(first) == 0
    ecs.start()
    first_rci, second_rci = fake_plane.wait_for("RegisterContainerInstance", count=2)
    assert "containerInstanceArn" not in first_rci.json
    assert second_rci.json["containerInstanceArn"] == CI_ARN
    assert "rack" not in {a["name"] for a in second_rci.json["attributes"]}


def test_a_saved_state_for_another_cluster_is_a_terminal_mismatch(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, cluster="new")
    state = lab_root / "var/lib/ecs/data/agent.db"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"Cluster": "old", "ContainerInstanceArn": CI_ARN}))
    proc = Ecs(lab_root, processes, tmp_path).start()
    assert proc.wait(timeout=15) == 5
    assert (
        "does not match configured cluster" in (lab_root / "var/log/ecs/ecs-agent.log").read_text()
    )


def test_a_missing_cluster_is_retried_not_terminal(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane, cluster="missing")
    proc = Ecs(lab_root, processes, tmp_path).start()
    fake_plane.wait_for("RegisterContainerInstance", count=3, timeout=15)
    assert proc.poll() is None
    assert not fake_plane.calls("CreateCluster")  # only an unset ECS_CLUSTER creates "default"


def test_without_ecs_cluster_the_agent_creates_the_default_cluster(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    fake_plane.missing_clusters.add("default")
    _host(lab_root, fake_plane)
    (lab_root / "etc/ecs/ecs.config").write_text("")
    Ecs(lab_root, processes, tmp_path).start()
    fake_plane.wait_for("DiscoverPollEndpoint")
    assert [c.json for c in fake_plane.calls("CreateCluster")] == [{"clusterName": "default"}]


def test_the_ecs_hang_fault_stops_introspection_and_acs_dials(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane)
    ecs = Ecs(lab_root, processes, tmp_path)
    proc = ecs.start()
    wait_until(lambda: fake_plane.dials(), timeout=10, what="an ACS dial")
    fault = lab_root / "run/anywhere-lab/faults/ecs-hang"
    fault.parent.mkdir(parents=True)
    fault.touch()
    time.sleep(0.6)
    frozen = len(fake_plane.dials())
    try:
        ecs.get("/v1/metadata", timeout=1.0)
        raise AssertionError("introspection answered while hung")
    except TimeoutError:
        pass
    assert len(fake_plane.dials()) == frozen
    assert proc.poll() is None
    fault.unlink()
    assert ecs.get("/v1/metadata")[0] == 200
    wait_until(lambda: len(fake_plane.dials()) > frozen, timeout=10, what="dials again")


def test_the_ecs_crash_fault_exits_1_about_a_second_after_start(
    lab_root: Path, fake_plane: FakePlane, processes: Processes, tmp_path: Path
) -> None:
    _host(lab_root, fake_plane)
    fault = lab_root / "run/anywhere-lab/faults/ecs-crash"
    fault.parent.mkdir(parents=True)
    fault.touch()
    started = time.monotonic()
    proc = Ecs(lab_root, processes, tmp_path).start()
    assert proc.wait(timeout=10) == 1
    assert 0.9 <= time.monotonic() - started < 5
    assert not fake_plane.seen


def test_ecs_init_actions_and_version_say_lab_double(lab_root: Path) -> None:
    env = double_env(lab_root)
    version = subprocess.run(
        [PYTHON, str(ECS), "version"], env=env, capture_output=True, text=True, timeout=30
    )
    assert version.returncode == 0 and version.stdout.startswith(
        "ecs-init version 1.105.1 (lab double)"
    )
    usage = subprocess.run([PYTHON, str(ECS)], env=env, capture_output=True, text=True, timeout=30)
    assert usage.returncode == 1 and "LAB DOUBLE" in usage.stdout
    for action in ("pre-start", "stop", "post-stop"):
        done = subprocess.run([PYTHON, str(ECS), action], env=env, capture_output=True, timeout=30)
        assert done.returncode == 0, action
    assert (lab_root / "var/lib/ecs/data").is_dir()
