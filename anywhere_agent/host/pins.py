"""Pinned agent package versions: what a pin asks of each source, and whether a version meets it.

A pin is written as AWS names its packages: the upstream version (`1.105.1`, `3.3.1802.0`),
optionally with the package revision (`1.105.1-1`). AWS builds both agents with revision 1, so
a pin without one means revision 1 where a source needs the full version (apt, AWS's ecs-init
key); an installed version meets a pin without a revision whatever its revision.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from anywhere_agent.config import Config
from anywhere_agent.host.agent_files import ECS_PACKAGE, SSM_PACKAGE

__all__ = [
    "ECS_PACKAGE",
    "PIN_KEYS",
    "SSM_PACKAGE",
    "STATUS_KEYS",
    "PinState",
    "ecs_agent_running",
    "full_version",
    "is_newer",
    "manager_spec",
    "option",
    "pinned",
    "s3_version",
    "satisfies",
    "upstream",
    "version_key",
    "with_pin",
]

# The config key that pins each package, and the `status` key it is reported under.
PIN_KEYS = {ECS_PACKAGE: "ecs_agent_version", SSM_PACKAGE: "ssm_agent_version"}
STATUS_KEYS = {ECS_PACKAGE: "ecs_init", SSM_PACKAGE: "ssm_agent"}
DEFAULT_REVISION = "1"


def pinned(cfg: Config, package: str) -> str:
    """The configured pin for `package`; "" when it follows the latest (or is not an agent)."""
    key = PIN_KEYS.get(package)
    return str(getattr(cfg, key)) if key else ""


def with_pin(cfg: Config, package: str, version: str) -> Config:
    """`cfg` with `package` pinned to `version` ("" for the latest)."""
    if package == ECS_PACKAGE:
        return dataclasses.replace(cfg, ecs_agent_version=version)
    return dataclasses.replace(cfg, ssm_agent_version=version)


def option(package: str) -> str:
    """The command-line option of the pin (`install`'s and `bundle`'s): --ecs-agent-version."""
    return "--" + PIN_KEYS[package].replace("_", "-")


def _without_epoch(version: str) -> str:
    return version.split(":", 1)[1] if ":" in version else version


def upstream(version: str) -> str:
    """`1:1.105.1-1` -> `1.105.1`: no epoch, no revision."""
    return _without_epoch(version).rsplit("-", 1)[0]


def full_version(pin: str) -> str:
    """The pin with a revision (`1.105.1` -> `1.105.1-1`), as apt and AWS's keys need it."""
    pin = _without_epoch(pin)
    return pin if "-" in pin else f"{pin}-{DEFAULT_REVISION}"


def satisfies(installed: str | None, pin: str) -> bool:
    """Whether an installed version meets the pin (no pin: anything installed does)."""
    if installed is None:
        return False
    if not pin:
        return True
    have = _without_epoch(installed)
    return have == _without_epoch(pin) if "-" in pin else upstream(have) == pin


def version_key(version: str) -> list[tuple[int, object]]:
    # rpmvercmp/dpkg in short: digit runs compare as numbers, letter runs as text, and a
    # number is newer than letters. Agent versions are dotted numbers with a numeric revision.
    return [(1, int(part)) if part.isdigit() else (0, part)
            for part in re.findall(r"\d+|[A-Za-z]+", _without_epoch(version))]


def is_newer(installed: str, pin: str) -> bool:
    """Whether `installed` is newer than the pinned version (so reaching the pin downgrades)."""
    return version_key(upstream(installed)) > version_key(upstream(pin)) or (
        "-" in pin and version_key(installed) > version_key(pin))


def s3_version(package: str, pin: str) -> str:
    """The version part of AWS's S3 key: ecs-init's file name carries the package version with
    its revision (`amazon-ecs-init-1.105.1-1.amd64.deb`), the SSM agent's directory only the
    upstream version (`amazon-ssm-<region>/3.3.1802.0/debian_amd64/`); `latest` unpinned."""
    if not pin:
        return "latest"
    return full_version(pin) if package == ECS_PACKAGE else upstream(pin)


def manager_spec(kind: str, package: str, pin: str) -> str:
    """The argument that asks a package manager for the pinned version."""
    if not pin:
        return package
    if kind == "apt":
        return f"{package}={full_version(pin)}"
    if kind == "zypper":
        return f"{package}={_without_epoch(pin)}"
    return f"{package}-{_without_epoch(pin)}"  # dnf/yum: name-version[-release]


@dataclass(frozen=True)
class PinState:
    """One agent's installed version against its pin, as `status` reports it. `running` is
    the version the agent itself reports (the ECS agent's introspection), when known: a
    package moved to the pin whose agent was not restarted still runs the old version."""

    package: str
    installed: str | None
    pinned: str
    running: str | None = None

    @property
    def state(self) -> str:
        if self.installed is None:
            return "not installed"
        if not self.pinned:
            return "unpinned"
        if not satisfies(self.installed, self.pinned):
            return "differs"
        if self.running and upstream(self.running) != upstream(self.pinned):
            return "not restarted"
        return "as pinned"

    def to_dict(self) -> dict[str, object]:
        return {"package": self.package, "installed": self.installed,
                "pinned": self.pinned or None, "running": self.running,
                "state": self.state.replace(" ", "_"),
                "matches": self.state in ("as pinned", "unpinned")}

    def describe(self) -> str:
        have = self.installed or "not installed"
        if not self.pinned:
            return f"{self.package} {have} (not pinned: latest)"
        if self.state == "as pinned":
            return f"{self.package} {have} (pinned {self.pinned})"
        if self.state == "not restarted":
            return (f"{self.package} {have} (pinned {self.pinned}; the agent still runs "
                    f"{self.running}: run install, or restart it)")
        return f"{self.package} {have} (pinned {self.pinned}: differs; run install)"


_ECS_AGENT_VERSION = re.compile(r"\bv(\d+(?:\.\d+)+)")


def ecs_agent_running(version_string: str | None) -> str | None:
    """`Amazon ECS Agent - v1.105.1 (*a8b3e7d3)` (introspection's Version) -> `1.105.1`."""
    m = _ECS_AGENT_VERSION.search(version_string or "")
    return m.group(1) if m else None
