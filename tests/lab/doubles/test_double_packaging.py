"""The lab package build: .deb contents and metadata, the apt index, the S3 layout, signatures."""

from __future__ import annotations

import gzip
import hashlib
import subprocess
from pathlib import Path
from typing import Any

from anywhere_agent.lab.doubles import ecs_agent, packaging, ssm_agent


def _deb(repos: Any, name: str, arch: str = "amd64") -> Path:
    return repos.packages[(name, arch)]  # type: ignore[no-any-return]


def _dpkg(*args: str) -> str:
    return subprocess.run(["dpkg-deb", *args], capture_output=True, text=True, check=True).stdout


def test_package_versions_match_the_doubles() -> None:
    assert packaging.SSM_VERSION == ssm_agent.VERSION
    assert packaging.ECS_VERSION == ecs_agent.AGENT_VERSION


def test_the_ssm_deb_ships_the_agent_unit_and_config_dir_and_says_lab_double(repos: Any) -> None:
    deb = _deb(repos, "amazon-ssm-agent")
    assert deb.name == "amazon-ssm-agent_3.3.1802.0-1_amd64.deb"
    listing = _dpkg("-c", str(deb))
    assert "-rwxr-xr-x root/root" in next(
        ln for ln in listing.splitlines() if "./usr/bin/amazon-ssm-agent" in ln
    )
    for entry in (
        "./lib/systemd/system/amazon-ssm-agent.service",
        "./etc/amazon/ssm/amazon-ssm-agent.json.template",
        "./etc/amazon/ssm/lab-double.json",
        "./var/lib/amazon/ssm/",
    ):
        assert entry in listing
    fields = _dpkg("-f", str(deb))
    assert "Package: amazon-ssm-agent" in fields and "Architecture: amd64" in fields
    assert "LAB DOUBLE" in fields


def _extract(deb: Path, tmp: Path) -> Path:
    out = tmp / deb.stem
    subprocess.run(["dpkg-deb", "-R", str(deb), str(out)], check=True)
    return out


def test_the_ssm_postinst_enables_and_starts_the_service_like_the_real_package(
    repos: Any, tmp_path: Path
) -> None:
    tree = _extract(_deb(repos, "amazon-ssm-agent"), tmp_path)
    postinst = (tree / "DEBIAN/postinst").read_text()
    assert (
        "systemctl enable amazon-ssm-agent" in postinst
        and "systemctl start amazon-ssm-agent" in postinst
    )
    unit = (tree / "lib/systemd/system/amazon-ssm-agent.service").read_text()
    assert "ExecStart=/usr/bin/amazon-ssm-agent" in unit and "Restart=always" in unit
    assert (tree / "usr/bin/amazon-ssm-agent").read_bytes().startswith(b"#!/usr/bin/python3\n")


def test_the_ecs_deb_ships_ecs_init_and_the_real_unit(repos: Any, tmp_path: Path) -> None:
    deb = _deb(repos, "amazon-ecs-init", "arm64")
    assert deb.name == "amazon-ecs-init_1.105.1-1_arm64.deb"
    fields = _dpkg("-f", str(deb))
    assert "Architecture: arm64" in fields and "LAB DOUBLE" in fields and "docker" not in fields
    tree = _extract(deb, tmp_path)
    unit = (tree / "lib/systemd/system/ecs.service").read_text()
    directives = [ln for ln in unit.splitlines() if ln and not ln.startswith("#")]
    for line in (
        "Wants=docker.service",
        "PartOf=docker.service",
        "After=docker.service",
        "Restart=on-failure",
        "RestartSec=10s",
        "EnvironmentFile=-/var/lib/ecs/ecs.config",
        "EnvironmentFile=-/etc/ecs/ecs.config",
        "ExecStart=/usr/libexec/amazon-ecs-init start",
        "ExecStartPre=/usr/libexec/amazon-ecs-init pre-start",
    ):
        assert line in directives
    assert unit.index("EnvironmentFile=-/var/lib/ecs/ecs.config") < unit.index(
        "EnvironmentFile=-/etc/ecs/ecs.config"
    )
    assert (tree / "usr/libexec/amazon-ecs-init").stat().st_mode & 0o111
    for d in ("etc/ecs", "var/log/ecs", "var/lib/ecs/data", "var/cache/ecs"):
        assert (tree / d).is_dir()
    assert "enable" not in (tree / "DEBIAN/postinst").read_text()  # like --no-enable --no-start


def test_the_apt_index_lists_every_deb_with_its_size_and_hash(repos: Any) -> None:
    text = (repos.apt_dir / "Packages").read_text()
    assert gzip.decompress((repos.apt_dir / "Packages.gz").read_bytes()).decode() == text
    stanzas = [s for s in text.split("\n\n") if s.strip()]
    assert len(stanzas) == len(repos.versions) == 8  # 2 agents x 2 versions x 2 arches
    for deb in repos.versions.values():
        stanza = next(s for s in stanzas if f"Filename: ./{deb.name}" in s)
        assert f"SHA256: {hashlib.sha256(deb.read_bytes()).hexdigest()}" in stanza
        assert f"Size: {deb.stat().st_size}" in stanza
    release = (repos.apt_dir / "Release").read_text()
    assert hashlib.sha256((repos.apt_dir / "Packages").read_bytes()).hexdigest() in release
    assert (
        repos.apt_source_line("http://10.213.7.1:8080")
        == "deb [trusted=yes] http://10.213.7.1:8080/apt ./\n"
    )


def test_the_s3_layout_has_the_paths_the_install_script_downloads(repos: Any) -> None:
    s3 = repos.s3_dir
    for arch in ("amd64", "arm64"):
        assert (s3 / f"amazon-ecs-agent-us-east-1/amazon-ecs-init-latest.{arch}.deb").is_file()
        assert (s3 / f"amazon-ecs-agent-us-east-1/amazon-ecs-init-latest.{arch}.deb.asc").is_file()
        assert (s3 / f"amazon-ssm-us-east-1/latest/debian_{arch}/amazon-ssm-agent.deb").is_file()
        assert (
            s3 / f"amazon-ssm-us-east-1/latest/debian_{arch}/amazon-ssm-agent.deb.sig"
        ).is_file()
    scripts = repos.out_dir / "github/aws/amazon-ecs-agent/master/scripts"
    assert (scripts / "amazon-ecs-agent.gpg").read_text() == repos.public_key.read_text()
    assert (scripts / "amazon-ssm-agent.gpg").is_file()


def _verify(home: Path, sig: Path, target: Path | None = None) -> subprocess.CompletedProcess[str]:
    argv = ["gpg", "--homedir", str(home), "--batch", "--verify", str(sig)]
    return subprocess.run(argv + ([str(target)] if target else []), capture_output=True, text=True)


def test_signatures_verify_with_gpg_and_only_the_exported_lab_key(
    repos: Any, tmp_path: Path
) -> None:
    home = tmp_path / "verify-gnupg"
    home.mkdir(mode=0o700)
    try:
        # As the install script does: import the published key file, then gpg --verify SIG FILE.
        subprocess.run(
            [
                "gpg",
                "--homedir",
                str(home),
                "--batch",
                "--import",
                str(
                    repos.out_dir
                    / "github/aws/amazon-ecs-agent/master/scripts/amazon-ecs-agent.gpg"
                ),
            ],
            check=True,
            capture_output=True,
        )
        deb = repos.s3_dir / "amazon-ecs-agent-us-east-1/amazon-ecs-init-latest.amd64.deb"
        ok = _verify(home, deb.with_name(deb.name + ".asc"), deb)
        assert ok.returncode == 0, ok.stderr
        assert repos.key_fingerprint in ok.stderr.replace(" ", "") or "Good signature" in ok.stderr
        ssm = repos.s3_dir / "amazon-ssm-us-east-1/latest/debian_amd64/amazon-ssm-agent.deb"
        assert _verify(home, ssm.with_name(ssm.name + ".sig"), ssm).returncode == 0
        assert _verify(home, repos.apt_dir / "InRelease").returncode == 0
        tampered = tmp_path / "tampered.deb"
        tampered.write_bytes(deb.read_bytes() + b"x")
        assert _verify(home, deb.with_name(deb.name + ".asc"), tampered).returncode != 0
    finally:
        subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True
        )


def test_a_second_build_with_unchanged_inputs_is_skipped(repos: Any) -> None:
    before = {p: p.stat().st_mtime_ns for p in repos.packages.values()}
    again = packaging.build_repos(repos.out_dir, signing_home=repos.out_dir.parent / "gnupg")
    assert again.rebuilt is False
    assert again.key_fingerprint == repos.key_fingerprint
    assert {p: p.stat().st_mtime_ns for p in again.packages.values()} == before


def test_the_default_signing_home_is_outside_the_served_directory(
    repos: Any, tmp_path: Path
) -> None:
    info = packaging.build_repos(tmp_path / "served")
    assert not any(p.name.endswith((".kbx", ".key")) for p in (tmp_path / "served").rglob("*"))
    assert (tmp_path / "anywhere-lab-signing-gnupg").is_dir()
    assert info.rebuilt
