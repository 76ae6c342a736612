"""install keeps the operator's agent.toml: the ActivationId that came with a code is not
written back, so Ansible's template and install agree on every run."""

from __future__ import annotations

from typing import Any

from tests.install.runs import run

TEMPLATE = """# {{ ansible_managed }} stand-in: the operator's comments stay
region = "us-east-1"
cluster = "prod"
package_source = "repo"
docker_source = "none"
"""


def test_an_install_with_an_activation_id_flag_leaves_the_operators_agent_toml_byte_for_byte(
        node: Any) -> None:
    system, make_ctx, _ = node
    path = system.root / "etc/anywhere-agent/agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(TEMPLATE)
    path.chmod(0o600)  # as the template writes it
    outcome = run(make_ctx())  # the fixture passes activation_id as a flag, with the code
    assert "ssm-registration" in outcome.changed  # it registered: the flag was used
    assert "agent-config" not in outcome.changed
    assert path.read_text() == TEMPLATE


def test_a_file_that_says_something_else_is_rewritten_without_the_activation_id(
        node: Any) -> None:
    system, make_ctx, _ = node
    path = system.root / "etc/anywhere-agent/agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(TEMPLATE.replace('"prod"', '"staging"'))
    outcome = run(make_ctx())
    assert "ssm-registration" in outcome.changed  # it registered: the flag was used
    text = path.read_text()
    assert 'cluster = "prod"' in text
    assert "activation_id" not in text


def test_an_activation_id_the_file_names_is_kept_when_the_rest_is_rewritten(node: Any) -> None:
    system, make_ctx, _ = node
    path = system.root / "etc/anywhere-agent/agent.toml"
    path.parent.mkdir(parents=True)
    path.write_text(TEMPLATE.replace('"prod"', '"staging"')
                    + 'activation_id = "11111111-2222-4333-8444-555555555555"\n')
    run(make_ctx())
    assert 'activation_id = "11111111-2222-4333-8444-555555555555"' in path.read_text()
