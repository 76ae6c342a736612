"""manifest.sha256: written in sha256sum format over every file, and verified file by file."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from anywhere_agent.bundle.manifest import MANIFEST, read_manifest, verify_bundle, write_manifest
from anywhere_agent.errors import ExitCode, PackageError


def make_bundle(root: Path) -> Path:
    (root / "wheels").mkdir(parents=True)
    (root / "agents").mkdir()
    (root / "wheels" / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"six")
    (root / "agents" / "amazon-ssm-agent_3.3_amd64.deb").write_bytes(b"ssm")
    (root / "file with space.txt").write_text("spaces are fine")
    write_manifest(root)
    return root


def test_written_manifest_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    entries = read_manifest((bundle / MANIFEST).read_text())
    assert entries == {
        "agents/amazon-ssm-agent_3.3_amd64.deb": hashlib.sha256(b"ssm").hexdigest(),
        "file with space.txt": hashlib.sha256(b"spaces are fine").hexdigest(),
        "wheels/six-1.17.0-py2.py3-none-any.whl": hashlib.sha256(b"six").hexdigest(),
    }
    assert verify_bundle(bundle) == entries


@pytest.mark.skipif(not shutil.which("sha256sum"), reason="needs coreutils sha256sum")
def test_manifest_is_what_sha256sum_checks(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    proc = subprocess.run(["sha256sum", "--check", "--strict", "--quiet", MANIFEST],
                          cwd=bundle, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_tampered_file_is_refused_with_one_line_naming_it(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "wheels" / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"evil")
    with pytest.raises(PackageError) as info:
        verify_bundle(bundle)
    assert "wheels/six-1.17.0-py2.py3-none-any.whl" in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == ExitCode.PACKAGE


def test_missing_file_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "agents" / "amazon-ssm-agent_3.3_amd64.deb").unlink()
    with pytest.raises(PackageError, match=r"agents/amazon-ssm-agent_3.3_amd64.deb is missing"):
        verify_bundle(bundle)


def test_file_not_in_the_manifest_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    (bundle / "wheels" / "extra-1.0-py3-none-any.whl").write_bytes(b"smuggled")
    with pytest.raises(PackageError, match=r"wheels/extra-1.0-py3-none-any.whl is not listed"):
        verify_bundle(bundle)


def test_symlink_in_place_of_a_listed_file_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "b")
    target = bundle / "agents" / "amazon-ssm-agent_3.3_amd64.deb"
    (tmp_path / "elsewhere").write_bytes(b"ssm")
    target.unlink()
    os.symlink(tmp_path / "elsewhere", target)
    with pytest.raises(PackageError, match=r"amazon-ssm-agent_3\.3_amd64\.deb is missing"):
        verify_bundle(bundle)


@pytest.mark.parametrize("line, why", [
    ("0" * 64 + "  ../etc/passwd", "outside the bundle"),
    ("0" * 64 + "  /etc/passwd", "outside the bundle"),
    ("0" * 63 + "  short", "malformed"),
    ("zz" * 32 + "  nothex", "malformed"),
    ("no-separator", "malformed"),
])
def test_manifest_lines_that_could_escape_or_mislead_are_refused(line: str, why: str) -> None:
    with pytest.raises(PackageError, match=why):
        read_manifest(line + "\n")


def test_star_binary_marker_of_sha256sum_is_accepted() -> None:
    digest = "a" * 64
    assert read_manifest(f"{digest} *wheels/x.whl\n") == {"wheels/x.whl": digest}


def test_bundle_without_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match=r"has no manifest\.sha256"):
        verify_bundle(tmp_path)
