"""The tier takes AWS's packages as well as bare binaries: .deb files are unpacked, never
installed, and the ECS agent comes out of the image archive that ecs-init ships.

These run in the unit tier (no real agents needed): the packages are built here with the
same layout as AWS's.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from real_agents import locate

pytestmark = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


def _deb(out: Path, name: str, files: dict[str, bytes]) -> Path:
    root = out / f"{name}-root"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o755)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN/control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: amd64\nMaintainer: t <t@t>\n"
        "Description: test\n")
    deb = out / f"{name}_1.0_amd64.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)], check=True,
                   capture_output=True)
    shutil.rmtree(root)
    return deb


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_debs_are_unpacked_and_the_ecs_agent_is_taken_from_ecs_inits_image(
        tmp_path: Path) -> None:
    packages = tmp_path / "packages"
    packages.mkdir()
    _deb(packages, "amazon-ssm-agent", {"usr/bin/amazon-ssm-agent": b"core",
                                        "usr/bin/ssm-agent-worker": b"worker"})
    image = _tar({
        "manifest.json": json.dumps([{"Layers": ["1a2b/layer.tar", "3c4d/layer.tar"]}]).encode(),
        "1a2b/layer.tar": _tar({"etc/ssl/certs/ca.crt": b"pem"}),
        "3c4d/layer.tar": _tar({"agent": b"the ecs agent", "LICENSE": b"apache"}),
    })
    _deb(packages, "amazon-ecs-init", {"usr/libexec/amazon-ecs-init": b"init",
                                       "var/cache/ecs/ecs-agent-v1.105.1.tar": image})

    found = locate(str(packages), tmp_path / "scratch")

    assert found.source == "packages"
    assert found.ssm["amazon-ssm-agent"].read_bytes() == b"core"
    assert found.ssm["ssm-agent-worker"].read_bytes() == b"worker"
    assert found.ecs_agent is not None and found.ecs_agent.read_bytes() == b"the ecs agent"
    assert found.ecs_agent.stat().st_mode & 0o111
    assert sorted(p.name for p in packages.iterdir()) == [  # unpacked elsewhere, not here
        "amazon-ecs-init_1.0_amd64.deb", "amazon-ssm-agent_1.0_amd64.deb"]


def test_a_directory_without_the_ssm_agent_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "amazon-ssm-agent").write_bytes(b"core")
    (tmp_path / "amazon-ssm-agent").chmod(0o755)
    with pytest.raises(FileNotFoundError, match="ssm-agent-worker"):
        locate(str(tmp_path), tmp_path / "scratch")
