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


def set_ini_keys(text: str, section: str, updates: Mapping[str, str | None]) -> str:
    """Set keys inside one [section] of an INI file (dnf.conf, yum.conf); other lines kept."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"[{section}]"), None)
    if start is None:
        body = set_env_keys("", updates)
        if not body:
            return text
        prefix = (text.rstrip("\n") + "\n\n") if text.strip() else ""
        return f"{prefix}[{section}]\n{body}"
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].strip().startswith("[")), len(lines))
    section_lines = lines[start + 1:end]
    blanks = len(section_lines) - len("\n".join(section_lines).rstrip("\n").splitlines())
    inner = set_env_keys("\n".join(section_lines[:len(section_lines) - blanks]),
                         updates).splitlines()
    merged = [*lines[:start + 1], *inner, *[""] * blanks, *lines[end:]]
    return "\n".join(merged) + "\n"


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
