"""versions(host): the package versions in use and the ECS agent's introspection Version."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from anywhere_agent import __version__
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.versions import render, versions


def scripted(answers: dict[str, Result]):  # type: ignore[no-untyped-def]
    def runner(argv: Sequence[str], *, input: bytes | None = None,
               env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        key = f"{argv[0]} {argv[-1]}"
        return answers.get(key, Result(tuple(argv), 127, "", f"{argv[0]}: command not found"))
    return runner


def test_debian_host_with_both_agents_and_an_answering_ecs_agent(tmp_path: object) -> None:
    host = Host("/", runner=scripted({
        "dpkg-query amazon-ssm-agent": Result((), 0, "installed 3.3.1802.0-1"),
        "dpkg-query amazon-ecs-init": Result((), 0, "installed 1.105.1-1"),
    }))
    meta = json.dumps({"Version": "Amazon ECS Agent - v1.105.1 (abc)"}).encode()
    got = versions(host, http_get=lambda url, t: (200, meta) if url.endswith("/v1/metadata")
                   else (404, b""))
    assert got == {"anywhere_agent": __version__, "ssm_agent": "3.3.1802.0-1",
                   "ecs_init": "1.105.1-1", "ecs_agent": "Amazon ECS Agent - v1.105.1 (abc)"}


def test_rpm_host_and_a_silent_ecs_agent() -> None:
    host = Host("/", runner=scripted({
        "rpm amazon-ssm-agent": Result((), 0, "3.3.1-1"),
        "rpm amazon-ecs-init": Result((), 1, "package amazon-ecs-init is not installed"),
    }))
    got = versions(host, http_get=lambda url, t: (0, b""))
    assert got["ssm_agent"] == "3.3.1-1"
    assert got["ecs_init"] is None and got["ecs_agent"] is None


def test_removed_but_not_purged_deb_counts_as_not_installed() -> None:
    host = Host("/", runner=scripted({
        "dpkg-query amazon-ssm-agent": Result((), 0, "config-files 3.3.1802.0-1"),
    }))
    assert versions(host, http_get=lambda url, t: (0, b""))["ssm_agent"] is None


def test_render_prints_one_line_each_with_a_dash_for_missing() -> None:
    text = render({"anywhere_agent": "0.1.0", "ssm_agent": "3.3", "ecs_init": None,
                   "ecs_agent": None})
    assert text.splitlines() == ["anywhere-agent 0.1.0", "amazon-ssm-agent 3.3",
                                 "amazon-ecs-init -", "ecs-agent -"]
