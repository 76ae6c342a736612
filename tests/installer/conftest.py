"""Fixtures for installer/install.sh: the script, a small synthetic bundle, a shell runner."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from anywhere_agent.bundle.manifest import write_manifest

INSTALLER = Path(__file__).resolve().parents[2] / "installer" / "install.sh"
Sh = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def installer() -> Path:
    return INSTALLER


@pytest.fixture
def dash() -> Sh:
    """Run install.sh under dash (optionally as nobody) with a clean environment."""
    if not shutil.which("dash"):
        pytest.skip("needs dash (apt-get install dash)")

    def run(*args: str, as_nobody: bool = False,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv: Sequence[str] = ["dash", str(INSTALLER), *args]
        if as_nobody and os.geteuid() == 0:
            argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                              env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **(env or {})},
                              stdin=subprocess.DEVNULL)

    return run


@pytest.fixture
def small_bundle(tmp_path: Path) -> Path:
    """A bundle-shaped directory (no real wheels) with a valid manifest."""
    root = tmp_path / "bundle"
    (root / "wheels").mkdir(parents=True)
    (root / "agents").mkdir()
    (root / "wheels" / "six-1.17.0-py2.py3-none-any.whl").write_bytes(b"six")
    (root / "agents" / "amazon-ssm-agent_3.3_amd64.deb").write_bytes(b"ssm")
    (root / "requirements.txt").write_text("six==1.17.0\n")
    (root / "bundle.json").write_text(json.dumps({
        "install_id": "0123456789abcdef", "python_version": "3.11", "target_arch": "x86_64",
        "distro_family": "deb", "project_version": "0.1.0"}, indent=2, sort_keys=True) + "\n")
    write_manifest(root)
    return root
