"""status reports what install made; uninstall removes it, deregisters, refuses to drop tasks."""

from __future__ import annotations

import io
from typing import Any

import pytest

from anywhere_agent.errors import RefusedError
from anywhere_agent.install.apply import Progress, apply
from anywhere_agent.node.status import gather, render_text
from anywhere_agent.node.uninstall import uninstall


def installed(node: Any) -> Any:
    system, make_ctx, backend = node
    apply(make_ctx(), Progress(io.StringIO(), tty=False))
    return system, make_ctx, backend


def test_status_reports_identity_cluster_services_and_last_install(node: Any) -> None:
    _, make_ctx, _ = installed(node)
    ctx = make_ctx(with_code=False)
    st = gather(ctx.cfg, ctx.host, ctx.http_get)
    assert st["managed_instance_id"] == "mi-00000000000000001"
    assert st["cluster"] == "prod" and st["region"] == "us-east-1"
    assert st["container_instance_arn"].endswith("/abc")
    assert st["services"]["ecs"]["active"] == "active"
    assert st["last_install"]["result"] == "ok"
    assert st["credentials"]["present"] is True
    text = render_text(st)
    assert "mi-00000000000000001" in text and "s3cr3t" not in text and "tok" not in text


def test_uninstall_refuses_while_tasks_run_unless_forced(node: Any) -> None:
    system, make_ctx, backend = installed(node)
    system.introspection["tasks"] = [{"Arn": "t1", "KnownStatus": "RUNNING"}]
    with pytest.raises(RefusedError):
        uninstall(make_ctx(with_code=False))
    assert backend.deregistered == []
    uninstall(make_ctx(with_code=False), force=True)
    assert "mi-00000000000000001" in backend.deregistered


def test_uninstall_deregisters_both_sides_and_removes_what_install_wrote(node: Any) -> None:
    system, make_ctx, backend = installed(node)
    (system.root / "var/lib/docker/volumes/data").mkdir(parents=True)
    result = uninstall(make_ctx(with_code=False))
    assert backend.deregistered[0].endswith("/abc")
    assert backend.deregistered[1] == "mi-00000000000000001"
    root = system.root
    for gone in ("etc/ecs/ecs.config", "var/lib/ecs/ecs.config", "var/lib/anywhere-agent",
                 "var/lib/amazon/ssm/registration", "root/.aws/credentials",
                 "etc/systemd/system/anywhere-agent.service", "etc/anywhere-agent"):
        assert not (root / gone).exists(), gone
    assert (root / "var/lib/docker/volumes/data").is_dir()
    assert "amazon-ssm-agent" not in system.packages
    assert result.errors == []


def test_uninstall_keep_packages_leaves_the_agents_installed(node: Any) -> None:
    system, make_ctx, _ = installed(node)
    uninstall(make_ctx(with_code=False), keep_packages=True)
    assert {"amazon-ssm-agent", "amazon-ecs-init"} <= set(system.packages)


def test_force_local_cleans_up_and_lists_what_stays_in_the_cloud(node: Any) -> None:
    _, make_ctx, backend = installed(node)
    result = uninstall(make_ctx(with_code=False), force_local=True)
    assert backend.deregistered == []
    assert "mi-00000000000000001" in result.left_in_cloud
