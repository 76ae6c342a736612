"""The lab's local AWS control plane (moto + ECS Anywhere extension); see server.ControlPlane."""

from __future__ import annotations

from typing import Any

__all__ = ["ControlPlane"]


def __getattr__(name: str) -> Any:
    # Imported lazily so `admin` (used by the lab CLI) does not pull in moto.
    if name == "ControlPlane":
        from anywhere_agent.lab.control_plane.server import ControlPlane

        return ControlPlane
    raise AttributeError(name)
