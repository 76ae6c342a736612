"""`anywhere-agent support-bundle`: a redacted archive of this node's state for a support case."""

from __future__ import annotations

import os
from typing import Optional

import typer

from anywhere_agent.cli import output


def support_bundle(
    out: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="PATH",
        help="File to write, or a directory to write it in "
             "[/var/tmp/anywhere-agent-support-HOST-TIME.tar.gz]."),
    config: Optional[str] = typer.Option(
        None, "--config", help="agent.toml to read [/etc/anywhere-agent/agent.toml]"),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    root: str = typer.Option("/", "--root", hidden=True,
                             help="Operate on this root (tests, chroots)."),
) -> None:
    """Write one .tar.gz (mode 0600, at most 8 MiB before compression) for a support case.

    It holds our state and install journal; preflight (no network), status and health as JSON;
    agent.toml, ecs.config, the SSM agent's JSON and the systemd drop-ins; the last 512 KiB of
    each agent's log and 2000 lines of each unit's journal; unit states, versions, docker info,
    disk and memory. Every secret is replaced by [REDACTED]: activation codes, AWS keys and
    session tokens, proxy passwords, the registration's RSA private key (the SSM vault and
    /root/.aws/credentials are never included). Run it as root to include everything.
    """
    from anywhere_agent.host.gateway import Host
    from anywhere_agent.host.platform import uname_machine
    from anywhere_agent.support.archive import build
    from anywhere_agent.support.collect import NodeFacts

    with output.errors_to_exit(as_json):
        facts = NodeFacts(env=dict(os.environ), euid=os.geteuid(), machine=uname_machine(),
                          config_path=config)
        result = build(Host(root), facts, out)
        if as_json:
            print(output.to_json(result.to_dict()))
            return
        print(f"support bundle: {result.path} ({result.bytes} bytes, "
              f"{len(result.collection.entries)} files, {result.collection.redactions} "
              "secrets redacted)")
        for name in result.collection.omitted:
            print(f"left out (size bound): {name}")
        for err in result.collection.errors:
            print(f"not collected: {err}")
