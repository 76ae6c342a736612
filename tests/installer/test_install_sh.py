"""install.sh without a lab: POSIX (shellcheck, dash), arguments, the secret rule, root, and the
bundle check it makes before anything is installed."""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="needs shellcheck")
def test_shellcheck_as_posix_sh_is_clean(installer: Path) -> None:
    proc = subprocess.run(["shellcheck", "-s", "sh", str(installer)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.skipif(not shutil.which("dash"), reason="needs dash")
def test_dash_parses_the_script(installer: Path) -> None:
    assert subprocess.run(["dash", "-n", str(installer)], check=False).returncode == 0


def test_help_under_dash_lists_the_sources_and_the_secret_rule(dash) -> None:  # type: ignore[no-untyped-def]
    proc = dash("--help")
    assert proc.returncode == 0
    for word in ("--bundle", "--index-url", "--proxy", "--install-python", "--uninstall",
                 "ANYWHERE_AGENT_ACTIVATION_CODE", "--activation-code-file"):
        assert word in proc.stdout, word


@pytest.mark.parametrize("args, fragment", [
    (["--bundle"], "option --bundle needs a value"),
    (["--index-url="], "option --index-url needs a non-empty value"),
    (["--bundle", "/x", "--index-url", "http://mirror"], "cannot be combined"),
    (["--verify-only"], "--verify-only needs --bundle"),
])
def test_argument_errors_are_one_line_with_exit_2(dash, args: list[str],  # type: ignore[no-untyped-def]
                                                  fragment: str) -> None:
    proc = dash(*args)
    assert proc.returncode == 2
    assert fragment in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert proc.stderr.startswith("install.sh: ") and "fix: " in proc.stderr


@pytest.mark.parametrize("args", [
    ["--activation-code", "secret-code"],
    ["--", "--region", "us-east-1", "--activation-code=secret-code"],
])
def test_an_activation_code_on_the_command_line_is_refused_without_echoing_it(
        dash, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    proc = dash(*args)
    assert proc.returncode == 2
    assert "must not be given on the command line" in proc.stderr
    assert "secret-code" not in proc.stderr + proc.stdout


def test_not_root_is_refused_with_exit_4(dash, small_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    proc = dash("--bundle", str(small_bundle), as_nobody=True)
    assert proc.returncode == 4
    assert proc.stderr.strip().startswith("install.sh: must run as root; fix: sudo sh")


def test_verify_only_accepts_an_intact_bundle_and_its_tarball(
        dash, small_bundle: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    tar = tmp_path / "bundle.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(small_bundle, arcname="anywhere-agent-bundle")
    for given in (small_bundle, tar):
        proc = dash("--verify-only", "--bundle", str(given))
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == (
            f"install.sh: bundle {given}: every file matches manifest.sha256")


@pytest.mark.parametrize("tamper, named", [
    (lambda b: (b / "wheels/six-1.17.0-py2.py3-none-any.whl").write_bytes(b"evil"),
     "bundle file wheels/six-1.17.0-py2.py3-none-any.whl does not match its checksum"),
    (lambda b: (b / "agents/amazon-ssm-agent_3.3_amd64.deb").unlink(),
     "bundle file agents/amazon-ssm-agent_3.3_amd64.deb is missing"),
    (lambda b: (b / "wheels/extra-1.0-py3-none-any.whl").write_bytes(b"x"),
     "bundle file wheels/extra-1.0-py3-none-any.whl is not listed in manifest.sha256"),
    (lambda b: (b / "manifest.sha256").write_text("0" * 64 + "  ../../etc/shadow\n"),
     "names a path outside the bundle: ../../etc/shadow"),
    (lambda b: (b / "manifest.sha256").unlink(), "has no manifest.sha256"),
])
def test_a_tampered_bundle_is_refused_with_one_line_naming_the_file(
        dash, small_bundle: Path, tamper, named: str) -> None:  # type: ignore[no-untyped-def]
    tamper(small_bundle)
    proc = dash("--verify-only", "--bundle", str(small_bundle))
    assert proc.returncode == 10
    assert named in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_the_tamper_check_runs_before_any_install_step(dash, small_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    """As root and without --verify-only a bad bundle stops before python, venv or link."""
    (small_bundle / "requirements.txt").write_text("evil==1\n")
    proc = dash("--bundle", str(small_bundle), "--no-handover")
    if proc.returncode == 4 and "must run as root" in proc.stderr:
        pytest.skip("needs root to get past the root check")
    assert proc.returncode == 10
    assert "bundle file requirements.txt does not match" in proc.stderr
    assert proc.stdout == ""
