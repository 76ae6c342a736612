"""`health` vouches only for state it understands, and says when the supervisor cannot write.

A state file from a newer anywhere-agent (another schema, a status this reader has no rank
for) reads UNKNOWN with the fix, never OK; a supervisor that runs but cannot write its state
is reported as that, not as "not running or hung".
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from anywhere_agent.cli.health import main
from anywhere_agent.health.model import Check, HostHealth, Status
from anywhere_agent.health.state import state_bytes


def write_config(tmp_path: Path, note: bool) -> str:
    path = tmp_path / "agent.toml"
    text = f"[health]\nstate_file = \"{tmp_path / 'health.json'}\"\n"
    if note:
        text += f"write_error_file = \"{tmp_path / 'run' / 'write-error.json'}\"\n"
    path.write_text(text)
    return str(path)


def fresh_state(**changes: object) -> dict[str, object]:
    health = HostHealth.build([Check("unit_ecs", Status.OK, "ecs is running", value=0.0)],
                              time.time(), cluster="lab")
    doc = json.loads(state_bytes(health))
    doc.update(changes)
    return doc


def run(tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str,
        note: bool = False) -> tuple[int, str]:
    code = main(["--config", write_config(tmp_path, note), "--format", fmt])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["nagios", "json", "prometheus"])
def test_a_state_file_from_a_future_schema_is_unknown_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    (tmp_path / "health.json").write_text(json.dumps(fresh_state(schema=99)))
    code, out = run(tmp_path, capsys, fmt)
    assert code == Status.UNKNOWN
    if fmt == "nagios":
        assert out.startswith("ANYWHERE-AGENT UNKNOWN") and "schema 99" in out
    elif fmt == "json":
        doc = json.loads(out)
        assert doc["status"] == "UNKNOWN" and "schema 99" in doc["summary"]
        assert "systemctl restart anywhere-agent" in doc["extra"]["fix"]
    else:
        assert "anywhere_agent_health_status 3" in out.splitlines()


@pytest.mark.parametrize("fmt", ["nagios", "json", "prometheus"])
def test_a_check_status_this_reader_does_not_know_is_unknown_not_ok(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    doc = fresh_state()
    doc["checks"] = [{**doc["checks"][0], "status": "DEGRADED",  # type: ignore[index]
                      "summary": "ecs is slow"}]
    (tmp_path / "health.json").write_text(json.dumps(doc))  # top-level status still "OK"
    code, out = run(tmp_path, capsys, fmt)
    assert code == Status.UNKNOWN
    if fmt == "nagios":
        assert out.startswith("ANYWHERE-AGENT UNKNOWN") and "'DEGRADED'" in out
    elif fmt == "json":
        (check,) = [c for c in json.loads(out)["checks"] if c["name"] == "unit_ecs"]
        assert check["status"] == "UNKNOWN" and "DEGRADED" in check["summary"]
        assert "systemctl restart anywhere-agent" in check["fix"]
    else:
        assert "anywhere_agent_health_status 3" in out.splitlines()


def test_a_supervisor_that_cannot_write_its_state_is_reported_as_that(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An old state file, and the supervisor's note that it cannot replace it.
    (tmp_path / "health.json").write_text(json.dumps(fresh_state(generated_at=time.time()
                                                                 - 600)))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "write-error.json").write_text(json.dumps({
        "schema": 1, "state_file": str(tmp_path / "health.json"),
        "error": "No space left on device", "generated_at": time.time()}))
    code, out = run(tmp_path, capsys, "nagios", note=True)
    assert code == Status.UNKNOWN
    assert "cannot write its state file" in out and "No space left on device" in out
    assert "not running" not in out
    # An old note proves nothing: then the stale state speaks for itself.
    (tmp_path / "run" / "write-error.json").write_text(json.dumps({
        "schema": 1, "state_file": "x", "error": "gone", "generated_at": time.time() - 600}))
    code, out = run(tmp_path, capsys, "nagios", note=True)
    assert code == Status.UNKNOWN and "not running or is hung" in out
