"""The IAM policies we publish, one file per actor under iam/ (the only copy of each)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from anywhere_agent.errors import ConfigError

# Actors and their files: iam/<name>.json in a checkout, share/anywhere-agent/iam/ when
# installed from a wheel (pyproject's data-files). The Ansible controller runs the registrar,
# so it is the registrar actor.
ACTORS = ("host-role-extra", "registrar")
_DIRS = (Path(__file__).resolve().parents[2] / "iam",
         Path(sys.prefix) / "share" / "anywhere-agent" / "iam")


def policy_path(name: str) -> Path:
    for directory in _DIRS:
        path = directory / f"{name}.json"
        if path.is_file():
            return path
    raise ConfigError(f"published IAM policy {name}.json not found in "
                      f"{' or '.join(str(d) for d in _DIRS)}",
                      "reinstall anywhere-agent (the wheel ships them under share/anywhere-agent)")


def load(name: str, partition: str = "aws") -> dict[str, Any]:
    """The policy document, its ARNs in the region's partition (aws, aws-cn, aws-us-gov)."""
    text = policy_path(name).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text.replace('"arn:aws:', f'"arn:{partition}:'))
    return document


def actions(document: dict[str, Any]) -> list[str]:
    """Every action the document's Allow statements name, in file order."""
    found: list[str] = []
    statements = document.get("Statement", [])
    for statement in [statements] if isinstance(statements, dict) else statements:
        if statement.get("Effect") != "Allow":
            continue
        names = statement.get("Action", [])
        found += [names] if isinstance(names, str) else list(names)
    return found
