"""Fast tests of the lab's pure parts: recipes, naming, inventory, state file, process refs."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from anywhere_agent.errors import LabError
from anywhere_agent.lab import hosts, image, network, nspawn
from anywhere_agent.lab.orchestrator import render_inventory
from anywhere_agent.lab.pkgserver import PackageServer
from anywhere_agent.lab.state import LabState
from anywhere_agent.lab.system import ProcessRef, start_time


def test_base_recipe_hash_is_stable_for_the_same_recipe() -> None:
    assert image.BaseRecipe().key() == image.BaseRecipe().key()


def test_base_recipe_hash_changes_when_a_package_is_added() -> None:
    more = image.BaseRecipe(packages=(*image.BASE_PACKAGES, "curl"))
    assert more.key() != image.BaseRecipe().key()


def test_base_recipe_hash_changes_when_post_processing_is_revised() -> None:
    assert image.BaseRecipe(revision=99).key() != image.BaseRecipe().key()


def test_node_layer_is_keyed_by_the_dependency_list_and_the_base() -> None:
    node = image.NodeRecipe(base_key="b1", requirements=("boto3>=1",))
    assert node.key() != image.NodeRecipe(base_key="b2", requirements=("boto3>=1",)).key()
    assert node.key() != image.NodeRecipe(base_key="b1", requirements=("boto3>=2",)).key()
    assert (
        node.wheel_key() == image.NodeRecipe(base_key="b2", requirements=("boto3>=1",)).wheel_key()
    )


def test_runtime_requirements_take_the_systemd_extra_and_leave_test_tools_out() -> None:
    reqs = image.runtime_requirements()
    names = " ".join(reqs)
    for dep in ("boto3", "psutil", "requests", "typer", "tenacity", "systemd-python"):
        assert dep in names
    for tool in ("pytest", "moto", "ruff", "mypy", "ansible"):
        assert tool not in names
    assert all("extra" not in r for r in reqs)


def test_a_crashed_build_is_discarded_and_only_a_committed_image_counts(tmp_path: Path) -> None:
    cache = image.ImageCache(root=tmp_path)
    final, tmp, meta = cache._entry("base", "k")
    tmp.mkdir()
    (tmp / "half").write_text("debootstrap died here")
    cache._begin(tmp)
    assert not tmp.exists() and not final.exists()
    tmp.mkdir()
    cache._commit(tmp, final, meta, {"build_seconds": 1})
    assert final.is_dir() and not tmp.exists()
    assert json.loads(meta.read_text())["build_seconds"] == 1


@pytest.mark.parametrize("lab", ["aalab", "a-very-long-lab-name-for-tests", "x1"])
def test_interface_names_fit_in_fifteen_bytes(lab: str) -> None:
    net = network.LabNet(lab, 42)
    for name in (net.bridge, net.veth("n1"), net.veth("n240")):
        assert len(name) <= network.IFNAMSIZ


def test_host_addresses_follow_the_architecture_map() -> None:
    net = network.LabNet("aalab", 7)
    assert net.gateway == "10.213.7.1"
    assert net.subnet == "10.213.7.0/24"
    assert net.host_ip("n1") == "10.213.7.11"
    assert net.host_ip("n10") == "10.213.7.20"
    assert net.netns("n2") == "aalab-n2"


def test_subnet_octet_is_stable_per_name_and_in_range() -> None:
    assert network.derive_octet("aalab") == network.derive_octet("aalab")
    for name in ("aalab", "hosttest", "zz", "crashtest"):
        assert network.OCTET_MIN <= network.derive_octet(name) <= network.OCTET_MAX


@pytest.mark.parametrize("bad", ["AA", "a b", "-a", "a", "a_b", "x" * 40])
def test_bad_lab_names_are_refused_with_a_fix(bad: str) -> None:
    with pytest.raises(LabError, match="fix"):
        network.LabNet(network.validate_lab_name(bad), 1)


def test_naming_convention_does_not_claim_another_labs_resources() -> None:
    a = network.LabNet("ab", 1)
    assert a.owns_netns("ab-n1") and a.owns_iface("ab-br") and a.owns_iface("ab-n12")
    assert not a.owns_netns("ab-n1-n1")  # lab "ab-n1", host n1
    assert not a.owns_iface("ab-n1-br")
    assert not a.owns_netns("abc-n1")


def test_inventory_lists_every_host_as_root_with_the_lab_key() -> None:
    text = render_inventory(
        "aalab",
        [("n1", "10.213.7.11"), ("n2", "10.213.7.12")],
        Path("/k/id"),
        "10.213.7.1",
        "us-east-1",
        "http://10.213.7.1:4566",
    )
    assert "[aalab]\nn1 ansible_host=10.213.7.11\nn2 ansible_host=10.213.7.12\n" in text
    assert "ansible_user=root" in text
    assert "ansible_ssh_private_key_file=/k/id" in text
    assert "StrictHostKeyChecking=no" in text and "UserKnownHostsFile=/dev/null" in text
    assert "anywhere_lab_endpoint=http://10.213.7.1:4566" in text


def test_state_file_records_each_resource_at_once_and_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "lab" / "state.json"
    state = LabState.new(path, "aalab", network.LabNet("aalab", 9), "us-east-1")
    state.record("netns", "aalab-n1")
    # Written before the caller creates the namespace, so a crash right after still knows it.
    assert json.loads(path.read_text())["netns"] == ["aalab-n1"]
    me = ProcessRef.of(os.getpid())
    state.set_process("control-plane", me, url="http://x")
    loaded = LabState.load(path)
    assert loaded is not None
    assert loaded.process_refs()["control-plane"] == me
    assert loaded.data["gateway"] == "10.213.9.1"


def test_state_file_of_another_format_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 999}))
    assert LabState.load(path) is None
    path.write_text("{not json")
    assert LabState.load(path) is None


def test_a_recycled_pid_is_not_taken_for_the_recorded_process() -> None:
    now = start_time(os.getpid())
    assert now is not None
    assert ProcessRef(os.getpid(), now).alive()
    assert not ProcessRef(os.getpid(), now + 1).alive()
    assert not ProcessRef(os.getpid(), now + 1).signal(0)


def test_host_files_point_apt_only_at_the_lab_repo_and_give_a_fresh_machine_id() -> None:
    h = hosts.LabHost(
        lab="aalab", name="n1", ip="10.213.7.11", netns="aalab-n1", dir=Path("/x"), key=Path("/k")
    )
    files = hosts.render_files(h, "10.213.7.1", "ssh-ed25519 AAAA lab")
    assert files[hosts.LAB_APT_LIST][0] == "deb [trusted=yes] http://10.213.7.1:8080/apt ./\n"
    assert (
        files["etc/machine-id"][0] != hosts.render_files(h, "10.213.7.1", "k")["etc/machine-id"][0]
    )
    assert files["root/.ssh/authorized_keys"] == ("ssh-ed25519 AAAA lab\n", 0o600)
    assert "10.213.7.1\tlab-gateway" in files["etc/hosts"][0]


def test_nspawn_runs_in_the_hosts_netns_without_registering() -> None:
    h = hosts.LabHost(
        lab="aalab", name="n1", ip="i", netns="aalab-n1", dir=Path("/x"), key=Path("/k")
    )
    argv = nspawn.nspawn_argv(h)
    assert "--network-namespace-path=/run/netns/aalab-n1" in argv
    assert {"--register=no", "--keep-unit", "--boot", "--machine=aalab-n1"} <= set(argv)


def test_package_server_serves_files_and_no_listings(tmp_path: Path) -> None:
    (tmp_path / "apt").mkdir()
    (tmp_path / "apt" / "Packages").write_text("Package: amazon-ssm-agent\n")
    server = PackageServer(tmp_path).start()
    try:
        with urllib.request.urlopen(f"{server.url}/apt/Packages", timeout=5) as resp:
            assert resp.read() == b"Package: amazon-ssm-agent\n"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{server.url}/apt/", timeout=5)
        assert err.value.code == 404
    finally:
        server.stop()


def test_each_host_gets_its_own_cgroup_below_the_callers() -> None:
    one, two = nspawn.cgroup_dirs("aalab-n1"), nspawn.cgroup_dirs("aalab-n2")
    assert one and len(one) == len(two)
    assert all(p.parts[-2:] == ("anywhere-lab", "aalab-n1") for p in one)
    assert not set(one) & set(two)
