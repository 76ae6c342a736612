"""The bundle builder: pinned wheels for the target, agent packages, bundle.json, a manifest
that verifies (in Python, with sha256sum, and with install.sh under dash)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import pytest

from anywhere_agent.bundle import agents
from anywhere_agent.bundle.build import (
    BundleInfo,
    BundleSpec,
    build_bundle,
    pins,
    target_requirements,
)
from anywhere_agent.bundle.manifest import MANIFEST, verify_bundle
from anywhere_agent.config import Config
from anywhere_agent.errors import PackageError, UsageError
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import Platform
from anywhere_agent.install.sources import Download, PackageSource

INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install.sh"


def test_built_bundle_has_a_manifest_that_verifies(built_bundle: BundleInfo) -> None:
    bundle = built_bundle.path
    listed = verify_bundle(bundle)
    assert "bundle.json" in listed and "requirements.txt" in listed and "install.sh" in listed
    assert subprocess.run(["sha256sum", "--check", "--strict", "--quiet", MANIFEST],
                          cwd=bundle, check=False).returncode == 0
    assert built_bundle.manifest_sha256 == hashlib.sha256(
        (bundle / MANIFEST).read_bytes()).hexdigest()


@pytest.mark.skipif(not shutil.which("dash"), reason="needs dash")
def test_install_sh_under_dash_accepts_the_built_bundle_and_its_tarball(
        built_bundle: BundleInfo) -> None:
    for given in (built_bundle.path, built_bundle.tarball):
        proc = subprocess.run(["dash", str(INSTALLER), "--verify-only", "--bundle", str(given)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert "every file matches manifest.sha256" in proc.stdout


def test_bundle_pins_every_wheel_exactly_and_records_versions(built_bundle: BundleInfo) -> None:
    bundle = built_bundle.path
    data = json.loads((bundle / "bundle.json").read_text())
    reqs = [ln for ln in (bundle / "requirements.txt").read_text().splitlines()
            if ln and not ln.startswith("#")]
    assert all("==" in r for r in reqs)
    assert dict(r.split("==") for r in reqs) == data["wheels"] == pins(bundle / "wheels")
    assert data["wheels"]["anywhere-agent"] == data["project_version"]
    for dep in ("boto3", "botocore", "psutil", "requests", "typer", "tenacity"):
        assert dep in data["wheels"], dep
    assert "tomli" not in data["wheels"]  # python_version < '3.11' does not hold for 3.11
    assert (data["target_arch"], data["distro_family"], data["python_version"]) == (
        "x86_64", "deb", "3.11")
    assert len(data["install_id"]) == 16


def test_wheels_are_binary_for_the_target_only(built_bundle: BundleInfo) -> None:
    for wheel in (built_bundle.path / "wheels").iterdir():
        assert wheel.suffix == ".whl", wheel.name
        tags = wheel.name[:-4].split("-")[-3:]
        assert tags[2] == "any" or "x86_64" in tags[2], wheel.name
        assert tags[0] in ("py3", "py2.py3", "cp311") or tags[1] == "abi3", wheel.name


def test_agent_packages_carry_the_arch_the_node_source_looks_for(
        built_bundle: BundleInfo) -> None:
    data = json.loads((built_bundle.path / "bundle.json").read_text())
    assert data["agents"]["amazon-ssm-agent"]["version"] == "3.3.1802.0-1"
    assert data["agents"]["amazon-ecs-init"]["file"] == "agents/amazon-ecs-init_1.105.1-1_amd64.deb"
    assert sorted(p.name for p in (built_bundle.path / "agents").iterdir()) == [
        "amazon-ecs-init_1.105.1-1_amd64.deb",
        "amazon-ssm-agent-binaries_3.3.4108.0_amd64.tar.gz",  # ECS Exec's, from AWS's layout
        "amazon-ssm-agent_3.3.1802.0-1_amd64.deb"]


def test_tarball_has_the_bundle_as_its_one_top_directory(built_bundle: BundleInfo) -> None:
    assert built_bundle.tarball is not None
    with tarfile.open(built_bundle.tarball) as tar:
        tops = {m.name.split("/", 1)[0] for m in tar.getmembers()}
        owners = {(m.uid, m.gid) for m in tar.getmembers()}
    assert tops == {built_bundle.path.name}
    assert owners == {(0, 0)}


def test_nodes_bundle_source_installs_the_agents_from_a_built_bundle(
        built_bundle: BundleInfo) -> None:
    """The consumer in install/sources.py finds and checks the agents of our layout."""
    calls: list[Sequence[str]] = []

    def runner(argv: Sequence[str], *, input: bytes | None = None,
               env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        calls.append(list(argv))
        return Result(tuple(argv), 0)

    host = Host("/", runner=runner)
    cfg = Config(region="us-east-1", package_source="bundle", bundle_dir=str(built_bundle.path))
    platform = Platform("debian", "12", "deb", "apt", "amd64", "x86_64")
    source = PackageSource(cfg, host, platform, PackageManager(host, "apt"))
    source.install("amazon-ssm-agent")
    source.install("amazon-ecs-init")
    installed = [c[-1] for c in calls]
    assert installed == [str(built_bundle.path / "agents/amazon-ssm-agent_3.3.1802.0-1_amd64.deb"),
                         str(built_bundle.path / "agents/amazon-ecs-init_1.105.1-1_amd64.deb")]


def _wheel_with(tmp_path: Path, requires: list[str]) -> Path:
    wheel = tmp_path / "anywhere_agent-9.9.9-py3-none-any.whl"
    meta = "Metadata-Version: 2.1\nName: anywhere-agent\nVersion: 9.9.9\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("anywhere_agent-9.9.9.dist-info/METADATA", meta)
    return wheel


def test_python_version_markers_are_evaluated_for_the_target_python(tmp_path: Path) -> None:
    wheel = _wheel_with(tmp_path, ["boto3<2,>=1.34", "tomli>=2.0; python_version < \"3.11\"",
                                   "systemd-python==235; extra == \"systemd\"",
                                   "odd; platform_system == \"Linux\""])
    assert target_requirements(wheel, "3.9") == (
        ["boto3<2,>=1.34", "tomli>=2.0", "odd; platform_system == \"Linux\""], [])
    assert target_requirements(wheel, "3.11", extras=("systemd",)) == (
        ["boto3<2,>=1.34", "odd; platform_system == \"Linux\""], ["systemd-python==235"])


@pytest.mark.parametrize("kw, fix", [
    ({"arch": "i386"}, "x86_64, arm64"),
    ({"distro_family": "apk"}, "deb, rpm"),
    ({"python": "3.8"}, "--python 3.11"),
    ({"python": "three"}, "--python 3.11"),
])
def test_bad_targets_are_usage_errors(tmp_path: Path, kw: dict[str, str], fix: str) -> None:
    spec = BundleSpec(**{"out": tmp_path / "b", "arch": "x86_64", "distro_family": "deb", **kw})
    with pytest.raises(UsageError, match=fix):
        build_bundle(spec)
    assert not (tmp_path / "b").exists()


def test_a_non_empty_out_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "precious.txt").write_text("keep")
    with pytest.raises(UsageError, match="is not empty"):
        build_bundle(BundleSpec(out=tmp_path / "b", arch="x86_64", distro_family="deb"))
    assert (tmp_path / "b" / "precious.txt").read_text() == "keep"


@pytest.mark.parametrize("arch, family, expected", [
    ("x86_64", "deb", ["amazon-ssm-agent_3.3.1.0-1_amd64.deb",
                       "amazon-ecs-init_1.90.0-1_amd64.deb"]),
    ("arm64", "deb", ["amazon-ssm-agent_3.3.1.0-1_arm64.deb",
                      "amazon-ecs-init_1.90.0-1_arm64.deb"]),
    ("x86_64", "rpm", ["amazon-ssm-agent-3.3.1.0-1.x86_64.rpm",
                       "amazon-ecs-init-1.90.0-1.x86_64.rpm"]),
])
def test_agents_from_a_directory_are_picked_for_the_target(
        tmp_path: Path, fake_agents: Path, arch: str, family: str, expected: list[str]) -> None:
    dest = tmp_path / "agents"
    dest.mkdir()
    got = agents.from_dir(fake_agents, dest, arch, family)
    assert [Path(p.file).name for p in got] == expected
    assert [p.version for p in got] == ["3.3.1.0-1", "1.90.0-1"]


def test_agents_missing_for_the_target_are_an_error_naming_the_package(
        tmp_path: Path, fake_agents: Path) -> None:
    dest = tmp_path / "agents"
    dest.mkdir()
    with pytest.raises(PackageError, match=r"no amazon-ssm-agent \.rpm for arm64"):
        agents.from_dir(fake_agents, dest, "arm64", "rpm")


def _aws_fetcher(repos: object, tamper: bool = False):  # type: ignore[no-untyped-def]
    """Serve AWS's S3 and GitHub key URLs from the lab's signed layout (lab key, not AWS's)."""
    s3_dir: Path = repos.s3_dir  # type: ignore[attr-defined]
    github: Path = repos.out_dir / "github"  # type: ignore[attr-defined]

    def fetch(url: str, proxies: dict[str, str]) -> Download:
        parsed = urlparse(url)
        base = github if parsed.netloc == "raw.githubusercontent.com" else s3_dir
        path = base / parsed.path.lstrip("/")
        if not path.is_file():
            return Download(url, 404, b"")
        body = path.read_bytes()
        if tamper and url.endswith(".deb"):
            body += b"\0"
        return Download(url, 200, body)

    return fetch


@pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg")
def test_agents_downloaded_online_are_signature_checked(tmp_path: Path, lab_repos: object) -> None:
    key: Path = lab_repos.public_key  # type: ignore[attr-defined]
    dest = tmp_path / "agents"
    dest.mkdir()
    got = agents.download(dest, "x86_64", "deb", region="us-east-1", signing_key=key,
                          fetch=_aws_fetcher(lab_repos))
    assert [(p.package, p.version) for p in got] == [("amazon-ssm-agent", "3.3.1802.0-1"),
                                                     ("amazon-ecs-init", "1.105.1-1")]
    assert got[0].origin.startswith("amazon-ssm-agent from https://s3.us-east-1.amazonaws.com/")

    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(PackageError, match=r"signature check failed for amazon-ssm-agent\.deb"):
        agents.download(bad, "x86_64", "deb", region="us-east-1", signing_key=key,
                        fetch=_aws_fetcher(lab_repos, tamper=True))
    assert not list(bad.iterdir())


@pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg")
def test_download_trusts_awss_key_only_by_its_pinned_fingerprint(
        tmp_path: Path, lab_repos: object) -> None:
    """Without --signing-key the key comes from AWS's GitHub URL; the lab key is not pinned."""
    with pytest.raises(PackageError, match=r"signed by key [0-9A-F]{40}, which is not pinned"):
        agents.download(tmp_path, "x86_64", "deb", region="us-east-1",
                        fetch=_aws_fetcher(lab_repos))
    assert not list(tmp_path.iterdir())
