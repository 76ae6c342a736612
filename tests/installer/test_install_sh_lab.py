"""install.sh end to end on a lab host with no route to any package index: a bundle built on
this machine (lab-double agents) is refused when tampered, installs and joins when intact,
changes nothing on a re-run, and `--uninstall` leaves the host clean."""

from __future__ import annotations

import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.bundle.build import BundleInfo, BundleSpec, build_bundle
from anywhere_agent.lab import rollout
from anywhere_agent.lab.doubles.packaging import build_repos
from anywhere_agent.lab.orchestrator import Lab

pytestmark = pytest.mark.lab

CLUSTER = "bundled"
HOST = "n1"
SCRIPT = "/root/install.sh"
INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install.sh"
PREFIX = "/opt/anywhere-agent"
LINK = "/usr/local/bin/anywhere-agent"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> BundleInfo:
    """Built here (pip may use the index); agents are the lab-double .debs."""
    work = tmp_path_factory.mktemp("lab-bundle")
    repos = build_repos(work / "repos", signing_home=work / "gnupg")
    return build_bundle(BundleSpec(out=work / "anywhere-agent-bundle", arch="x86_64",
                                   distro_family="deb", agents_from=repos.apt_dir, tarball=True))


@pytest.fixture(scope="module")
def tampered(bundle: BundleInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same bundle with one byte of one wheel changed, as a tarball."""
    work = tmp_path_factory.mktemp("tampered")
    copy = work / "anywhere-agent-bundle"
    shutil.copytree(bundle.path, copy)
    victim = next((copy / "wheels").glob("requests-*.whl"))
    data = bytearray(victim.read_bytes())
    data[100] ^= 0xFF
    victim.write_bytes(bytes(data))
    tar = work / "tampered.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(copy, arcname=copy.name)
    return tar


@pytest.fixture(scope="module")
def lab(bundle: BundleInfo, tampered: Path) -> Iterator[Lab]:
    with Lab(name="aabndl").running(1) as lab:
        # The lab image pre-bakes a venv at /opt/anywhere-agent; this test wants a bare host.
        lab.exec(HOST, ["rm", "-rf", PREFIX, LINK])
        lab.copy_in(HOST, INSTALLER, SCRIPT, 0o755)
        assert bundle.tarball is not None
        lab.copy_in(HOST, bundle.tarball, "/root/bundle.tar.gz")
        lab.copy_in(HOST, tampered, "/root/tampered.tar.gz")
        url = lab.control_plane_url()
        # The bundle is for hosts with no route to any package index: it carries the agents,
        # not Docker, so this host runs the engine-less path (an offline host brings its own).
        rollout.write_config(lab, HOST, rollout.node_config(url, lab.region, CLUSTER,
                                                            docker_source="none"))
        yield lab


@pytest.fixture(scope="module")
def activation(lab: Lab) -> rollout.LabActivation:
    return rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, 5)


def run_installer(lab: Lab, *args: str, activation: rollout.LabActivation | None = None
                  ) -> tuple[int, str, str]:
    """install.sh over ssh as an operator would; the code goes in on standard input."""
    argv = ["sh", SCRIPT, *args]
    data = b""
    if activation is not None:
        argv += ["--", "--activation-id", activation.activation_id, "--activation-code-file", "-"]
        data = activation.code.reveal().encode()
    proc = lab.ssh(HOST, argv, input=data, check=False)
    return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def exists(lab: Lab, path: str) -> bool:
    return lab.exec(HOST, ["test", "-e", path], check=False).returncode == 0 or (
        lab.exec(HOST, ["test", "-L", path], check=False).returncode == 0)


def dpkg_has(lab: Lab, package: str) -> bool:
    proc = lab.exec(HOST, ["dpkg-query", "-W", "-f=${db:Status-Status}", package], check=False)
    return proc.stdout.decode() == "installed"


def registered(lab: Lab) -> tuple[list[str], list[str]]:
    url = lab.control_plane_url()
    ssm = rollout.lab_client(url, "ssm", lab.region)
    ecs = rollout.lab_client(url, "ecs", lab.region)
    infos = ssm.describe_instance_information(MaxResults=50)["InstanceInformationList"]
    mis = [i["InstanceId"] for i in infos]
    arns = ecs.list_container_instances(cluster=CLUSTER, status="ACTIVE")["containerInstanceArns"]
    return mis, arns


def snapshot(lab: Lab) -> dict[str, Any]:
    """Everything a re-run could change: our tree, the link, registration, unit starts."""
    # Directory mtimes are left out: preflight's writability probe creates and removes a file.
    tree = lab.exec(HOST, ["sh", "-c", f"find {PREFIX} /etc/anywhere-agent /etc/systemd/system "
                           "\\( -type d -printf '%p %m\\n' \\) -o -printf '%p %s %T@ %m\\n' "
                           "| sort"]).stdout.decode()
    units = {u: lab.exec(HOST, ["systemctl", "show", u, "-p", "MainPID,NRestarts,"
                               "ActiveEnterTimestamp"], check=False).stdout.decode()
             for u in ("ecs", "amazon-ssm-agent", "anywhere-agent")}
    reg = lab.exec(HOST, ["cat", "/var/lib/amazon/ssm/registration"], check=False).stdout
    link = lab.exec(HOST, ["readlink", LINK], check=False).stdout.decode()
    return {"tree": tree, "units": units, "registration": reg, "link": link}


def test_lab_host_has_no_route_to_any_package_index(lab: Lab) -> None:
    probe = ("import socket\n"
             "for addr in (('151.101.0.223', 443), ('1.1.1.1', 443)):\n"
             "    try:\n"
             "        socket.create_connection(addr, timeout=3).close(); print('reached', addr)\n"
             "    except OSError:\n"
             "        pass\n"
             "try:\n"
             "    socket.getaddrinfo('pypi.org', 443); print('resolved pypi.org')\n"
             "except OSError:\n"
             "    pass\n")
    out = lab.exec(HOST, ["python3", "-c", probe]).stdout.decode()
    assert out == "", out


def test_tampered_bundle_is_refused_naming_the_file_and_nothing_is_installed(
        lab: Lab, activation: rollout.LabActivation) -> None:
    code, out, err = run_installer(lab, "--bundle", "/root/tampered.tar.gz",
                                   activation=activation)
    assert code == 10, err
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("install.sh: bundle file wheels/requests-")
    assert "does not match its checksum" in lines[0]
    assert not exists(lab, PREFIX) and not exists(lab, LINK)
    assert not dpkg_has(lab, "amazon-ssm-agent") and not dpkg_has(lab, "amazon-ecs-init")
    assert not exists(lab, "/var/lib/amazon/ssm/registration")
    leftovers = lab.exec(HOST, ["sh", "-c", "ls /var/tmp | grep anywhere-agent-bundle || true"])
    assert leftovers.stdout.decode() == ""


def test_bundle_installs_offline_and_the_host_joins(
        lab: Lab, activation: rollout.LabActivation, bundle: BundleInfo) -> None:
    code, out, err = run_installer(lab, "--bundle", "/root/bundle.tar.gz",
                                   activation=activation)
    assert code == 0, err[-2000:]
    assert "installed anywhere-agent 0.1.0 in /opt/anywhere-agent/venv" in out
    assert "install ok (changed" in out
    mis, arns = registered(lab)
    assert len(mis) == 1 and len(arns) == 1
    link = lab.exec(HOST, ["readlink", LINK]).stdout.decode().strip()
    assert link == f"{PREFIX}/venv/bin/anywhere-agent"
    status = json.loads(lab.ssh(HOST, ["anywhere-agent", "status", "--json"]).stdout)
    assert status["managed_instance_id"] == mis[0]
    assert status["versions"]["ssm_agent"] == "3.3.1802.0-1"
    assert status["versions"]["ecs_init"] == "1.105.1-1"
    # Exactly the bundle's pins are in the venv.
    frozen = lab.exec(HOST, [f"{PREFIX}/venv/bin/python", "-m", "pip", "freeze",
                             "--disable-pip-version-check"]).stdout.decode()
    pins = json.loads((bundle.path / "bundle.json").read_text())["wheels"]
    installed = {ln.split("==")[0].lower().replace("_", "-"): ln.split("==")[1]
                 for ln in frozen.splitlines() if "==" in ln}
    assert installed == pins


def test_rerun_of_install_sh_changes_nothing(lab: Lab, activation: rollout.LabActivation) -> None:
    before = snapshot(lab)
    code, out, err = run_installer(lab, "--bundle", "/root/bundle.tar.gz",
                                   activation=activation)
    assert code == 0, err[-2000:]
    assert "is already installed in /opt/anywhere-agent/venv; nothing to change" in out
    assert "install ok (already converged" in out
    after = snapshot(lab)
    changed = sorted(set(after["tree"].splitlines()) ^ set(before["tree"].splitlines()))
    assert changed == []
    assert after == before
    mis, arns = registered(lab)
    assert len(mis) == 1 and len(arns) == 1


def test_uninstall_leaves_the_host_clean(lab: Lab) -> None:
    code, out, err = run_installer(lab, "--uninstall")
    assert code == 0, err[-2000:]
    assert not exists(lab, PREFIX) and not exists(lab, LINK)
    assert not exists(lab, "/var/lib/amazon/ssm/registration")
    assert not exists(lab, "/etc/systemd/system/anywhere-agent.service")
    assert not dpkg_has(lab, "amazon-ssm-agent") and not dpkg_has(lab, "amazon-ecs-init")
    mis, arns = registered(lab)
    assert mis == [] and arns == []
    # A second uninstall finds nothing to do and still succeeds.
    code, out, err = run_installer(lab, "--uninstall")
    assert code == 0, err
    assert "not installed" in out
