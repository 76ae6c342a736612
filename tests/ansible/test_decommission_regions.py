"""decommission.yml on a multi-region inventory: the controller deregisters each region's
nodes in that region, and confirms against every region. Nodes are local-connection hosts
without anywhere-agent (the node play has nothing to do) and the controller's CLI is a
recorder, so this runs without a lab."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.ansible.conftest import run_playbook, tool

NODES = {"node-a": ("eu-west-1", "mi-0000000000000000a"),
         "node-b": ("us-east-1", "mi-0000000000000000b"),
         "node-c": ("eu-west-1", "mi-0000000000000000c")}

RECORDER = """#!{python}
import json, sys
with open({log!r}, "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[2] == "deregister":
    ids = [a for a in sys.argv if a.startswith("mi-")]
    print(json.dumps({{"done": len(ids), "already_gone": 0}}))
else:
    print(json.dumps({{"hosts": []}}))
"""


@pytest.fixture()
def controller(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.jsonl"
    cli = tmp_path / "anywhere-agent"
    cli.write_text(RECORDER.format(python=sys.executable, log=str(log)))
    cli.chmod(0o755)
    return cli, log


def test_decommission_deregisters_each_nodes_in_its_own_region(
        tmp_path: Path, controller: tuple[Path, Path]) -> None:
    tool("ansible-playbook")
    cli, log = controller
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[anywhere_agent_nodes]\n" + "".join(
        f"{name} ansible_connection=local ansible_python_interpreter={sys.executable} "
        f"ecs_anywhere_node_region={region} ecs_anywhere_node_managed_instance_id={mi}\n"
        for name, (region, mi) in NODES.items()))
    extra = {"ecs_anywhere_node_controller_cli": str(cli),
             "ecs_anywhere_node_controller_environment": {},
             # Nothing of the project on these "nodes"; and nothing of this machine removed.
             "ecs_anywhere_node_bin_link": str(tmp_path / "no-such-cli"),
             "decommission_remove_project": False}
    run = run_playbook("decommission.yml", inventory, extra, timeout=300)
    assert run.rc == 0, run.output[-3000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    deregister = sorted(c for c in calls if c[1] == "deregister")
    assert deregister == [
        ["registrar", "deregister", "--json", "--region", "eu-west-1", "--force",
         "mi-0000000000000000a", "mi-0000000000000000c"],
        ["registrar", "deregister", "--json", "--region", "us-east-1", "--force",
         "mi-0000000000000000b"]]
    [fleet] = [c for c in calls if c[1] == "fleet"]
    assert fleet == ["registrar", "fleet", "--json", "--region", "eu-west-1,us-east-1"]
