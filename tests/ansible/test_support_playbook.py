"""support.yml on a node reached over a local connection: the bundle lands on the controller
0600, leaves the node, and nothing the node's command printed shows in Ansible's output."""

from __future__ import annotations

import json
import sys
import tarfile
from pathlib import Path

import pytest

from tests.ansible.conftest import ANSIBLE_DIR, run_playbook

yaml = pytest.importorskip("yaml")

SECRET = "LeakedActivationCode123"
# Stands in for `anywhere-agent support-bundle`: writes a small archive where --output says,
# and prints a summary that (unlike the real one) carries a secret, to prove no_log holds.
FAKE_CLI = f'''#!{sys.executable}
import io, json, sys, tarfile
out = sys.argv[sys.argv.index("--output") + 1]
assert sys.argv[1] == "support-bundle" and "--json" in sys.argv
with tarfile.open(out, "w:gz") as tar:
    data = b"{{}}"
    info = tarfile.TarInfo("b/manifest.json"); info.size = len(data)
    tar.addfile(info, io.BytesIO(data))
print(json.dumps({{"path": out, "bytes": 123, "redactions": 7, "errors": ["x: {SECRET}"]}}))
'''


def test_support_yml_fetches_each_bundle_0600_and_shows_no_command_output(
        tmp_path: Path) -> None:
    cli = tmp_path / "anywhere-agent"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    remote = tmp_path / "node-tmp"
    remote.mkdir()
    dest = tmp_path / "case-1234"
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[anywhere_agent_nodes]\nnode1 ansible_connection=local "
                         f"ansible_python_interpreter={sys.executable}\n")
    run = run_playbook("support.yml", inventory, {
        "ecs_anywhere_node_bin_link": str(cli), "support_dest": str(dest),
        "support_remote_dir": str(remote)}, "-vvv")
    assert run.rc == 0, run.output
    assert run.recap()["node1"]["failed"] == 0
    fetched = dest / "node1.tar.gz"
    assert fetched.stat().st_mode & 0o777 == 0o600 and dest.stat().st_mode & 0o777 == 0o700
    with tarfile.open(fetched) as tar:
        assert tar.getnames() == ["b/manifest.json"]
    assert list(remote.iterdir()) == []
    assert SECRET not in run.output
    assert f"{dest}/node1.tar.gz: 123 bytes, 7 secrets redacted, 1 parts not collected" \
        in run.output


def test_the_task_that_runs_the_node_command_is_no_log() -> None:
    plays = yaml.safe_load((ANSIBLE_DIR / "playbooks" / "support.yml").read_text())
    tasks = [t for play in plays for t in play["tasks"]]
    [run] = [t for t in tasks if "support-bundle" in json.dumps(t)]
    assert run["no_log"] is True
    [fetch] = [t for t in tasks if "ansible.builtin.fetch" in t]
    assert fetch["ansible.builtin.fetch"]["flat"] is True
    assert all(k.startswith("ansible.builtin.") for t in tasks for k in t
               if k not in ("name", "register", "changed_when", "no_log", "delegate_to",
                            "run_once", "become", "when"))
