"""README's IAM table names exactly the actions of the policy files in iam/."""

from __future__ import annotations

import re
from pathlib import Path

from anywhere_agent.registrar import policies

README = Path(__file__).resolve().parents[2] / "README.md"


def _iam_rows() -> dict[str, list[str]]:
    section = README.read_text().split("## IAM\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        files = re.findall(r"`iam/([\w-]+)\.json`", cells[1]) if len(cells) == 3 else []
        if files:
            rows[files[-1]] = re.findall(r"`([\w-]+:\w+)`", cells[2])
    return rows


def test_readme_iam_table_lists_each_policy_files_actions() -> None:
    rows = _iam_rows()
    assert sorted(rows) == sorted(policies.ACTORS)
    for name, actions in rows.items():
        assert actions == policies.actions(policies.load(name)), name


def test_every_published_policy_file_is_valid_iam_json() -> None:
    for name in ("host-role-extra", "registrar"):
        document = policies.load(name, "aws-cn")
        assert document["Version"] == "2012-10-17"
        assert all(s["Effect"] == "Allow" and s.get("Sid") for s in document["Statement"])
        assert "arn:aws:" not in str(document)  # the partition follows the region
