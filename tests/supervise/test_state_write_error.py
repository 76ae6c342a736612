"""A supervisor whose state file cannot be written says so where `health` looks first."""

from __future__ import annotations

import dataclasses
import errno
import json
from typing import TYPE_CHECKING

from anywhere_agent.cli.health import evaluate
from anywhere_agent.health.model import Status
from anywhere_agent.host.gateway import Host, _io_error

if TYPE_CHECKING:
    from conftest import Node


class FullVarLib(Host):
    """The node's gateway while /var/lib is full: every write there fails as the OS says."""

    full = True

    def write_atomic(self, node_path: str, content: bytes | str, mode: int = 0o644) -> bool:
        if self.full and node_path.startswith("/var/lib/"):
            raise _io_error(self.path(node_path), OSError(errno.ENOSPC, "No space left on device"),
                            "write")
        return super().write_atomic(node_path, content, mode)


def test_full_state_disk_is_reported_as_a_write_error_then_cleared(node: Node) -> None:
    sup = node.supervisor()
    sup.step()  # a good round first: the state file exists, then the disk fills up
    disk = FullVarLib(node.root, runner=node.systemd)
    sup.host = disk
    node.clock.advance(300)  # long past stale_after_seconds
    sup.step()
    note = node.host.path(node.config.health.write_error_file)
    assert "No space left on device" in json.loads(note.read_text())["error"]
    assert note.stat().st_mode & 0o777 == 0o644

    # `health` as monitoring runs it, on the node's files (no agent.toml: the defaults).
    health = evaluate(None, now=node.clock.time(), root=node.root)
    assert health.status is Status.UNKNOWN
    assert "cannot write its state file /var/lib/anywhere-agent/health.json" in health.summary
    assert "No space left on device" in health.summary and "not running" not in health.summary

    disk.full = False
    node.clock.advance(15)
    sup.step()
    assert not note.exists()
    assert evaluate(None, now=node.clock.time(), root=node.root).status is Status.OK


def test_a_note_left_by_an_earlier_run_is_removed_by_the_first_good_round(node: Node) -> None:
    note = node.host.path(node.config.health.write_error_file)
    note.parent.mkdir(parents=True)
    note.write_text("{}")
    node.supervisor().step()
    assert not note.exists()
    assert dataclasses.asdict(node.config.health)["write_error_file"].startswith("/run/")
