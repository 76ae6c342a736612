"""A bundle carries the pinned agent versions (several, for an upgrade and its rollback)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from anywhere_agent.bundle import agents
from anywhere_agent.errors import PackageError


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    d = tmp_path / "agents-src"
    d.mkdir()
    for name in ("amazon-ssm-agent_3.3.9.0-1_amd64.deb", "amazon-ssm-agent_3.3.10.0-1_amd64.deb",
                 "amazon-ecs-init_1.90.0-1_amd64.deb", "amazon-ecs-init_1.90.1-1_amd64.deb"):
        (d / name).write_bytes(name.encode())
    return d


def test_unpinned_the_bundle_takes_the_newest_version_by_version_order(
        tmp_path: Path, two_versions: Path) -> None:
    got = agents.from_dir(two_versions, tmp_path, "x86_64", "deb")
    # 3.3.10.0 sorts before 3.3.9.0 as text: the choice must be by version.
    assert [(p.package, p.version) for p in got] == [("amazon-ssm-agent", "3.3.10.0-1"),
                                                     ("amazon-ecs-init", "1.90.1-1")]


def test_pinned_versions_are_each_carried(tmp_path: Path, two_versions: Path) -> None:
    got = agents.from_dir(two_versions, tmp_path, "x86_64", "deb", versions={
        "amazon-ecs-init": ("1.90.0", "1.90.1"), "amazon-ssm-agent": ("3.3.9.0",)})
    assert sorted(p.file for p in got) == [
        f"{tmp_path.name}/amazon-ecs-init_1.90.0-1_amd64.deb",
        f"{tmp_path.name}/amazon-ecs-init_1.90.1-1_amd64.deb",
        f"{tmp_path.name}/amazon-ssm-agent_3.3.9.0-1_amd64.deb"]


def test_a_pinned_version_the_directory_lacks_is_an_error_naming_what_is_there(
        tmp_path: Path, two_versions: Path) -> None:
    with pytest.raises(PackageError, match=r"no amazon-ecs-init 1\.89\.0 .*1\.90\.0-1, 1\.90\.1-1")\
            as err:
        agents.from_dir(two_versions, tmp_path, "x86_64", "deb",
                        versions={"amazon-ecs-init": ("1.89.0",)})
    assert "--ecs-agent-version" in err.value.fix


@pytest.mark.skipif(not shutil.which("gpg"), reason="needs gpg")
def test_pinned_versions_are_downloaded_from_awss_versioned_keys_signature_checked(
        tmp_path: Path, lab_repos: object) -> None:
    from tests.bundle.test_build import _aws_fetcher

    key: Path = lab_repos.public_key  # type: ignore[attr-defined]
    seen: list[str] = []
    fetch = _aws_fetcher(lab_repos)

    def recording(url: str, proxies: dict[str, str]) -> object:
        seen.append(url)
        return fetch(url, proxies)

    got = agents.download(tmp_path, "x86_64", "deb", region="us-east-1", signing_key=key,
                          fetch=recording,  # type: ignore[arg-type]
                          versions={"amazon-ecs-init": ("1.105.0", "1.105.1"),
                                    "amazon-ssm-agent": ("3.3.1611.0",)})
    assert [(p.package, p.version) for p in got] == [("amazon-ssm-agent", "3.3.1611.0-1"),
                                                     ("amazon-ecs-init", "1.105.0-1"),
                                                     ("amazon-ecs-init", "1.105.1-1")]
    base = "https://s3.us-east-1.amazonaws.com/"
    assert base + "amazon-ssm-us-east-1/3.3.1611.0/debian_amd64/amazon-ssm-agent.deb" in seen
    assert base + "amazon-ecs-agent-us-east-1/amazon-ecs-init-1.105.0-1.amd64.deb" in seen
    assert not any("latest" in url for url in seen)
