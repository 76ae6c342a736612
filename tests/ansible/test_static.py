"""Static checks of ansible/: defaults mirrored by argument_specs, syntax, ansible-lint."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.ansible.conftest import ANSIBLE_DIR, run_playbook, tool

# PyYAML comes with ansible-core (pip install -e '.[ansible]').
yaml = pytest.importorskip("yaml")

ROLE = ANSIBLE_DIR / "roles" / "ecs_anywhere_node"
PLAYBOOKS = sorted((ANSIBLE_DIR / "playbooks").glob("*.yml"))
TYPES = {str: "str", bool: "bool", int: "int", dict: "dict", list: "list"}


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_default_is_in_argument_specs_with_the_same_type_and_value() -> None:
    defaults = load(ROLE / "defaults" / "main.yml")
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert sorted(defaults) == sorted(options), set(defaults) ^ set(options)
    for name, value in defaults.items():
        spec = options[name]
        assert spec["type"] == TYPES[type(value)], name
        assert spec["default"] == value, name
        assert spec.get("description"), f"{name} has no description"


def test_every_role_variable_carries_the_role_prefix() -> None:
    for name in load(ROLE / "defaults" / "main.yml"):
        assert name.startswith("ecs_anywhere_node_"), name


def test_the_activation_code_option_is_marked_no_log() -> None:
    options = load(ROLE / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert options["ecs_anywhere_node_activation_code"].get("no_log") is True


def test_every_task_that_reads_the_activation_code_is_no_log() -> None:
    for path in (ROLE / "tasks").glob("*.yml"):
        for task in _tasks(load(path) or []):
            text = yaml.safe_dump(task)
            if "activation_code" in text or "_activation.code" in text \
                    or "_activation_doc" in text:
                assert task.get("no_log") is True, (path.name, task.get("name"))


def _tasks(items: list) -> list:
    out = []
    for item in items:
        out.append(item)
        for key in ("block", "rescue", "always"):
            out.extend(_tasks(item.get(key, [])))
    return out


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=lambda p: p.name)
def test_playbook_passes_syntax_check(playbook: Path, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[anywhere_agent_nodes]\nnode1\n")
    run = run_playbook(playbook.name, inventory, {}, "--syntax-check")
    assert run.rc == 0, run.output


def test_ansible_lint_production_profile_passes() -> None:
    proc = subprocess.run([str(tool("ansible-lint")), "--offline", "--nocolor", "--profile",
                           "production", "."], cwd=ANSIBLE_DIR, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
