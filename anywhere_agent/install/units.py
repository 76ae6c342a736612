"""The systemd units and drop-ins we ship (canonical copies live in the repo's `systemd/`)."""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from anywhere_agent.errors import PackageError

# A wheel installs `systemd/` as data files under <prefix>/share/anywhere-agent/systemd;
# a source checkout or editable install reads the repo's own folder.
_CANDIDATES = (
    Path(sys.prefix) / "share" / "anywhere-agent" / "systemd",
    Path(__file__).resolve().parents[2] / "systemd",
)


@cache
def unit_text(relpath: str) -> str:
    for base in _CANDIDATES:
        path = base / relpath
        if path.is_file():
            return path.read_text(encoding="utf-8")
    raise PackageError(f"the packaged unit file {relpath} is missing",
                       "reinstall anywhere-agent (its systemd/ data files are incomplete)")
