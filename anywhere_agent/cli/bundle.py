"""`anywhere-agent bundle`: build the air-gapped bundle for install.sh and the node's installs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from anywhere_agent.cli import output


def bundle(
    arch: str = typer.Option(..., "--arch", help="Target CPU: x86_64 | arm64."),
    distro_family: str = typer.Option(..., "--distro-family",
                                      help="Agent package format: deb | rpm."),
    out: Path = typer.Option(..., "--out", help="Directory to create (must be empty)."),
    python: str = typer.Option("3.11", "--python",
                               help="The nodes' python3 version (X.Y) the wheels are for."),
    agents_from: Optional[Path] = typer.Option(
        None, "--agents-from",
        help="Take amazon-ssm-agent / amazon-ecs-init packages from this directory instead of "
             "downloading them, and ECS Exec's binaries from "
             "amazon-ssm-agent-binaries_<version>_<arch>.tar.gz there if present (else "
             "nodes copy them from the SSM agent package)."),
    region: str = typer.Option("us-east-1", "--region",
                               help="Region whose AWS buckets the agents are downloaded from."),
    package_base_url: str = typer.Option("", "--package-base-url",
                                         help="A mirror of AWS's S3 layout for the agents."),
    signing_key: Optional[Path] = typer.Option(
        None, "--signing-key", help="ASCII-armoured public key the agents must be signed with."),
    index_url: str = typer.Option("", "--index-url",
                                  help="pip index for the wheels [pip's configuration]."),
    find_links: list[str] = typer.Option([], "--find-links",
                                         help="Extra wheel directory or URL for pip."),
    proxy: str = typer.Option("", "--proxy", help="Proxy for pip and the agent downloads."),
    no_systemd_python: bool = typer.Option(
        False, "--no-systemd-python",
        help="Leave out systemd-python (journald logging falls back to stderr)."),
    ecs_agent_version: list[str] = typer.Option(
        [], "--ecs-agent-version",
        help="amazon-ecs-init version to carry (repeat for several, e.g. the current one and "
             "the upgrade; nodes pick theirs by ecs_agent_version) [the latest]."),
    ssm_agent_version: list[str] = typer.Option(
        [], "--ssm-agent-version",
        help="amazon-ssm-agent version to carry (repeatable, like --ecs-agent-version)."),
    tarball: bool = typer.Option(False, "--tarball", help="Also write <out>.tar.gz."),
    force: bool = typer.Option(False, "--force", help="Replace an existing bundle at --out."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Build an offline bundle: pinned wheels, the SSM and ECS agents, manifest.sha256."""
    from anywhere_agent.bundle.build import BundleSpec, build_bundle

    with output.errors_to_exit(as_json):
        info = build_bundle(BundleSpec(
            out=out, arch=arch, distro_family=distro_family, python=python,
            agents_from=agents_from, region=region, package_base_url=package_base_url,
            signing_key=signing_key, index_url=index_url, find_links=tuple(find_links),
            proxy=proxy, systemd_python=not no_systemd_python, tarball=tarball, force=force,
            ecs_agent_versions=tuple(ecs_agent_version),
            ssm_agent_versions=tuple(ssm_agent_version)))
        if as_json:
            print(output.to_json(info.to_dict()))
            return
        data = info.data
        print(f"bundle {info.path} ({info.size_bytes / 1e6:.1f} MB): anywhere-agent "
              f"{data['project_version']} for {data['target_arch']}/{data['distro_family']}, "
              f"Python {data['python_version']}, {len(data['wheels'])} wheels")
        for agent in data["agent_files"]:
            print(f"  {agent['package']} {agent['version']} ({agent['file']})")
        print(f"  systemd-python: {data['systemd_python']}")
        # The manifest guards every file; this digest guards the manifest (compare it on the
        # node with `sha256sum manifest.sha256` when the copy path is not trusted).
        print(f"manifest.sha256 sha256: {info.manifest_sha256}")
        if info.tarball:
            print(f"tarball {info.tarball}")
        print(f"on the node: sh {info.path.name}/install.sh --bundle {info.path.name} -- "
              "--region ... --cluster ... --activation-id ... --activation-code-file FILE")
