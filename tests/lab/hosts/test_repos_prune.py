"""Old builds of the agent doubles leave the lab cache; the current, served and recent stay."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from anywhere_agent.lab.services import REPOS_GRACE, prune_repos, served_repos
from tests.conftest import wait_for

NOW = 1_800_000_000.0


def _build(cache: Path, name: str, age: float) -> Path:
    path = cache / name
    (path / "apt").mkdir(parents=True)
    (path / "apt" / "Packages").write_text("Package: amazon-ssm-agent\n")
    os.utime(path, (NOW - age, NOW - age))
    return path


def test_prune_removes_old_builds_but_keeps_the_current_the_served_and_the_recent(
    tmp_path: Path,
) -> None:
    old = REPOS_GRACE + 60
    current = _build(tmp_path, "repos-" + "a" * 16, old)
    stale = _build(tmp_path, "repos-" + "b" * 16, old)
    served = _build(tmp_path, "repos-" + "c" * 16, old)
    recent = _build(tmp_path, "repos-" + "d" * 16, REPOS_GRACE - 60)
    # Not builds of the doubles: the signing key's home, the lock, an older layout.
    others = [_build(tmp_path, "repos-gnupg", old), _build(tmp_path, "repos", old)]
    (tmp_path / "repos.lock").touch()

    removed = prune_repos(tmp_path, keep=current, served={served}, now=NOW)

    assert removed == [stale]
    assert not stale.exists()
    assert all(p.is_dir() for p in (current, served, recent, *others))
    assert (tmp_path / "repos.lock").exists()


def test_served_repos_names_the_root_of_a_running_package_server(tmp_path: Path) -> None:
    root = tmp_path / ("repos-" + "e" * 16)
    # A process whose argv reads as the lab's package server's.
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)",
         "anywhere_agent.lab.pkgserver", "--root", str(root)]
    )
    try:  # polled: on a loaded machine one read of /proc missed the new process's argv
        wait_for(f"a package server serving {root}", lambda: root in served_repos(),
                 timeout=10, interval=0.1, detail=served_repos)
    finally:
        proc.kill()
        proc.wait()
    assert root not in served_repos()
