"""The dry-run plan for a fresh node matches the reviewed golden file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anywhere_agent.install.apply import plan, render_plan

GOLDEN = Path(__file__).with_name("golden")


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text()


def test_fresh_node_plan_matches_golden(node: Any) -> None:
    _, make_ctx, _ = node
    check("plan_fresh.txt", render_plan(plan(make_ctx())) + "\n")


def test_proxy_plan_touches_every_component(node: Any) -> None:
    _, make_ctx, _ = node
    text = render_plan(plan(make_ctx(**{"proxy.https": "http://proxy.corp:3128",
                                        "proxy.no_proxy": "10.0.0.0/8",
                                        "docker_source": "distro"})))
    check("plan_proxy.txt", text + "\n")
    for path in ("/etc/apt/apt.conf.d/90anywhere-agent-proxy",
                 "/etc/systemd/system/amazon-ssm-agent.service.d/http-proxy.conf",
                 "/etc/systemd/system/docker.service.d/http-proxy.conf",
                 "/etc/systemd/system/ecs.service.d/http-proxy.conf",
                 "/etc/anywhere-agent/proxy/amazon-ssm-agent.env",
                 "/etc/anywhere-agent/proxy/docker.env", "/etc/anywhere-agent/proxy/ecs.env"):
        assert path in text
    assert "+HTTP_PROXY=http://proxy.corp:3128" in text
    assert '+HTTPS_PROXY="http://proxy.corp:3128"' in text
