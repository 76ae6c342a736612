"""The product on lab hosts: the checkout's wheel, built once per lab, installed over ssh."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from anywhere_agent.errors import LabError
from anywhere_agent.lab import hosts as hostlib
from anywhere_agent.lab import image, system

if TYPE_CHECKING:
    from anywhere_agent.lab.orchestrator import Lab


def product_wheel(lab: Lab) -> Path:
    """The project's wheel, built once per lab from the checkout this package runs from."""
    with lab.wheel_lock:
        out = lab.dir / "wheels"
        found = sorted(out.glob("anywhere_agent-*.whl"))
        if found:
            return found[-1]
        # This file is anywhere_agent/lab/product.py inside the checkout.
        src = Path(__file__).resolve().parents[2]
        if not (src / "pyproject.toml").is_file():
            raise LabError(
                f"anywhere_agent runs from {src}, not a source checkout",
                "install it editable from a checkout: pip install -e .[lab]",
            )
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="anywhere-lab-src-") as tmp:
            # Building in a copy keeps build/ and *.egg-info out of the working tree.
            copy = Path(tmp) / "src"
            shutil.copytree(
                src,
                copy,
                ignore=shutil.ignore_patterns(
                    ".git",
                    ".venv",
                    "venv",
                    "tests",
                    "build",
                    "dist",
                    "*.egg-info",
                    "__pycache__",
                    ".mypy_cache",
                    ".ruff_cache",
                    ".pytest_cache",
                    "node_modules",
                ),
            )
            system.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "--disable-pip-version-check",
                    "--wheel-dir",
                    str(out),
                    str(copy),
                ],
                timeout=600,
                what="pip wheel of anywhere-agent",
            )
        found = sorted(out.glob("anywhere_agent-*.whl"))
        if not found:
            raise LabError("pip wheel produced no anywhere_agent wheel", "run it by hand")
        return found[-1]


def install_product(lab: Lab, host: str) -> str:
    """Install the project wheel into the host's venv over ssh; returns its version line."""
    wheel = product_wheel(lab)
    h = lab.host(host)
    remote = f"/var/tmp/{wheel.name}"
    venv = image.VENV
    hostlib.ssh(h, ["dd", f"of={remote}", "status=none"], input=wheel.read_bytes())
    hostlib.ssh(
        h,
        [
            f"{venv}/bin/pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--force-reinstall",
            "--disable-pip-version-check",
            remote,
        ],
    )
    hostlib.ssh(
        h, ["ln", "-sfn", f"{venv}/bin/anywhere-agent", "/usr/local/bin/anywhere-agent"]
    )
    hostlib.ssh(h, ["rm", "-f", remote])
    proc = hostlib.ssh(h, [f"{venv}/bin/pip", "show", "anywhere-agent"], check=False)
    version = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in proc.stdout.decode().splitlines()
            if ln.startswith("Version:")
        ),
        "unknown",
    )
    return version


def install_products(lab: Lab, hosts: Sequence[str] = ()) -> list[dict[str, str]]:
    """`lab install`: the product on `hosts` (default: every host), one row per host."""
    targets = list(hosts) or [h.name for h in lab.hosts()]
    return [{"host": h, "version": install_product(lab, h)} for h in targets]
