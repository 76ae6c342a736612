"""Set configuration keys one by one (never append blindly): KEY=VALUE files and JSON files."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


def set_env_keys(text: str, updates: Mapping[str, str | None]) -> str:
    """Return `text` with each KEY set to its value (None removes it); other lines are kept.

    A key that appears several times (e.g. after the official script appended on re-runs)
    collapses to one line at its first position.
    """
    lines = text.splitlines()
    out: list[str] = []
    seen: set[str] = set()
    for line in lines:
        key = line.split("=", 1)[0].strip() if "=" in line and not line.lstrip().startswith("#") \
            else None
        if key is not None and key in updates:
            if key in seen:
                continue
            seen.add(key)
            value = updates[key]
            if value is not None:
                out.append(f"{key}={value}")
            continue
        out.append(line)
    for key, value in updates.items():
        if key not in seen and value is not None:
            out.append(f"{key}={value}")
    return "\n".join(out) + "\n" if out else ""


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines; the last occurrence wins, like systemd's EnvironmentFile."""
    result: dict[str, str] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            result[key.strip()] = value.strip()
    return result


def set_json_keys(text: str, updates: Mapping[tuple[str, ...], Any]) -> str:
    """Set nested keys of a JSON document (None removes the key); other keys are kept."""
    try:
        doc = json.loads(text) if text.strip() else {}
    except ValueError:
        doc = {}
    if not isinstance(doc, dict):
        doc = {}
    for path, value in updates.items():
        node = doc
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                if value is None:
                    break
                child = {}
                node[part] = child
            node = child
        else:
            if value is None:
                node.pop(path[-1], None)
            else:
                node[path[-1]] = value
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
