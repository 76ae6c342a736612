"""The state journal (/var/lib/anywhere-agent/state.json) and the install lock.

The journal holds no secrets: identities, step results, pending restarts. A step is recorded
only after it finished, and a restart is recorded as pending *before* the file that causes it
is written, so a run killed at any point is finished correctly by the next one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from anywhere_agent.errors import HostIOError, LockedError
from anywhere_agent.host import agent_files
from anywhere_agent.host.gateway import Host
from anywhere_agent.secret import redact_userinfo

SCHEMA = 1


class Journal:
    def __init__(self, host: Host) -> None:
        self._host = host
        self.data: dict[str, Any] = self._load()

    def _load(self) -> dict[str, Any]:
        try:
            data = agent_files.read_state(self._host)
        except ValueError:
            # A torn or hand-edited journal must not block a repair run: start afresh.
            return {"schema": SCHEMA, "note": "previous state.json was unreadable"}
        return data or {"schema": SCHEMA}

    def save(self) -> None:
        self._host.write_atomic(agent_files.STATE_FILE,
                                json.dumps(self.data, indent=2, sort_keys=True) + "\n", 0o644)

    # identity ----------------------------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        ident = self.data.get("identity")
        return ident if isinstance(ident, dict) else {}

    def set_identity(self, **fields: Any) -> None:
        self.data["identity"] = {**self.identity, **fields}
        self.save()

    def retire_identity(self, reason: str) -> dict[str, Any]:
        """Move the current identity to `previous_identities` (reported, never silently kept)."""
        old = dict(self.identity)
        if old:
            old["retired_reason"] = reason
            old["retired_at"] = _now()
            self.data.setdefault("previous_identities", []).append(old)
        self.data["identity"] = {}
        self.save()
        return old

    def clear_identity(self) -> None:
        self.data["identity"] = {}
        self.save()

    @property
    def previous_identities(self) -> list[dict[str, Any]]:
        return list(self.data.get("previous_identities", []))

    # packages we installed (uninstall removes only these) ----------------------------------
    def installed_packages(self) -> list[str]:
        return list(self.data.get("installed_packages", []))

    def record_installed(self, package: str) -> None:
        self.data["installed_packages"] = sorted(set(self.installed_packages()) | {package})
        self.save()

    def forget_installed(self, package: str) -> None:
        self.data["installed_packages"] = sorted(set(self.installed_packages()) - {package})
        self.save()

    # the cluster the host's credentials found ACTIVE ----------------------------------------
    @property
    def cluster_checked(self) -> str:
        return str(self.data.get("cluster_checked") or "")

    def record_cluster_checked(self, cluster: str) -> None:
        self.data["cluster_checked"] = cluster
        self.save()

    def record_ecs_exec_version(self, version: str) -> None:
        """The SSM agent binaries ECS Exec uses, as installed under the ECS agent's dir."""
        self.data["ecs_exec_version"] = version
        self.save()

    # pending restarts --------------------------------------------------------------------
    def pending_restarts(self) -> set[str]:
        return set(self.data.get("pending_restarts", []))

    def add_pending_restart(self, unit: str) -> None:
        pending = self.pending_restarts()
        if unit not in pending:
            self.data["pending_restarts"] = sorted(pending | {unit})
            self.save()

    def clear_pending_restart(self, unit: str) -> None:
        pending = self.pending_restarts()
        if unit in pending:
            self.data["pending_restarts"] = sorted(pending - {unit})
            self.save()

    # runs --------------------------------------------------------------------------------
    def begin_run(self, kind: str) -> None:
        self.data["last_run"] = {"kind": kind, "started_at": _now(), "result": "running",
                                 "steps": []}
        self.save()

    def record_step(self, name: str, changed: list[str]) -> None:
        run = self.data.setdefault("last_run", {"steps": []})
        run.setdefault("steps", []).append({"step": name, "changed": changed, "at": _now()})
        self.save()

    @property
    def last_run(self) -> dict[str, Any]:
        run = self.data.get("last_run")
        return run if isinstance(run, dict) else {}

    def end_run(self, result: str, detail: str = "") -> None:
        run = self.data.setdefault("last_run", {})
        run.update(result=result, finished_at=_now())
        if detail:
            run["detail"] = redact_userinfo(detail)  # state.json is world-readable
        self.save()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@contextmanager
def install_lock(host: Host) -> Iterator[None]:
    """An exclusive flock: two runs of install/uninstall never interleave."""
    path = host.path(agent_files.LOCK_FILE)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise HostIOError(f"cannot create the lock {agent_files.LOCK_FILE}: {err.strerror}",
                          "run as root on a writable /var/lib") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno in (errno.EAGAIN, errno.EACCES):
                raise LockedError(
                    "another anywhere-agent install or uninstall is running",
                    "wait for it to finish (see `anywhere-agent status`)") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)
