"""The `bundle` command function: errors are one line with the usage exit code."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from anywhere_agent.cli.bundle import bundle


def app() -> typer.Typer:
    a = typer.Typer()
    a.command("bundle")(bundle)
    a.command("noop")(lambda: None)  # two commands keep `bundle` a subcommand, as in main.py
    return a


def test_unknown_arch_is_a_one_line_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app(), ["bundle", "--arch", "sparc", "--distro-family", "deb",
                                        "--out", str(tmp_path / "b")])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: unknown --arch 'sparc'; fix: use one of x86_64, arm64")
    assert not (tmp_path / "b").exists()
