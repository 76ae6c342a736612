"""The host gateway writes atomically with modes and reports unwritable paths as one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anywhere_agent.errors import HostIOError
from anywhere_agent.host.gateway import Host


def test_atomic_write_sets_the_mode_and_reports_change(tmp_path: Path) -> None:
    host = Host(tmp_path)
    assert host.write_atomic("/etc/x/secret", "a", 0o600) is True
    assert (tmp_path / "etc/x/secret").stat().st_mode & 0o777 == 0o600
    assert host.write_atomic("/etc/x/secret", "a", 0o600) is False
    assert host.write_atomic("/etc/x/secret", "a", 0o644) is True
    assert [p.name for p in (tmp_path / "etc/x").iterdir()] == ["secret"]


def test_unwritable_directory_is_a_host_io_error_naming_the_path(tmp_path: Path) -> None:
    ro = tmp_path / "etc"
    ro.mkdir()
    ro.chmod(0o500)
    host = Host(tmp_path)
    try:
        if os.geteuid() == 0:
            # root ignores mode bits; a file in the way of a directory fails the same way.
            (tmp_path / "blocked").write_text("")
            target = "/blocked/x.conf"
        else:
            target = "/etc/x.conf"
        with pytest.raises(HostIOError) as err:
            host.write_atomic(target, "x")
        assert target.split("/")[1] in str(err.value) and "\n" not in str(err.value)
    finally:
        ro.chmod(0o700)


def test_run_reports_a_missing_program_as_127(tmp_path: Path) -> None:
    res = Host(tmp_path).run(["/nonexistent/program"])
    assert res.returncode == 127 and not res.ok
