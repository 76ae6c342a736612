"""Fixtures for lab host tests: skip without root or nspawn; one 3-host lab per test session."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from anywhere_agent.lab.orchestrator import Lab
from anywhere_agent.lab.state import LabInfo
from tests.conftest import lab_skip_reason

HOSTS_LAB = "hosttest"


def services_available() -> tuple[bool, bool]:
    """(control plane, agent-double packages) importable: other parts of the lab."""
    cp = importlib.util.find_spec("anywhere_agent.lab.control_plane.server") is not None
    try:
        pkg = importlib.util.find_spec("anywhere_agent.lab.doubles.packaging") is not None
    except ModuleNotFoundError:
        pkg = False
    return cp, pkg


@pytest.fixture(scope="session")
def lab_env() -> None:
    reason = lab_skip_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab_services() -> tuple[bool, bool]:
    """Whether to start the control plane and the package server (other helpers' parts)."""
    return services_available()


@pytest.fixture(scope="session")
def hosts_lab(lab_env: None, lab_services: tuple[bool, bool]) -> Iterator[tuple[Lab, LabInfo]]:
    """A 3-host lab shared by the host tests; torn down (and checked) at the end."""
    cp, pkg = lab_services
    lab = Lab(HOSTS_LAB)
    info = lab.up(3, control_plane=cp, packages=pkg)
    try:
        yield lab, info
    finally:
        lab.down()
