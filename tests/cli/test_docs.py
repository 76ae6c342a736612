"""README's exit-code table is the one in errors.py."""

from __future__ import annotations

import re
from pathlib import Path

from anywhere_agent.errors import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_exit_code_table_matches_the_code() -> None:
    rows = re.findall(r"^\| (\d+) \| (\w+) \|", README.read_text(), re.M)
    assert [(int(c), n) for c, n in rows] == [(int(c), c.name.lower()) for c in ExitCode]


def test_readme_opens_with_the_demo_and_test_commands() -> None:
    head = README.read_text().split("```")[1]
    assert "make demo" in head and "make test" in head
