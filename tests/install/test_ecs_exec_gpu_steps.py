"""ECS Exec's files and the GPU settings, installed on the scripted node from each package
source, converging on a re-run."""

from __future__ import annotations

import hashlib
import io
import json
from typing import Any

import pytest

from anywhere_agent.errors import ConfigError, PackageError
from anywhere_agent.host import ecs_exec
from anywhere_agent.install.apply import Progress, apply, plan
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.sources import Download, PackageSource
from anywhere_agent.install.steps import ExecBinariesStep, ExecCertsStep, all_steps
from anywhere_agent.install.steps.gpu import docker_runtime_step
from anywhere_agent.lab.doubles.packaging import exec_tarball
from anywhere_agent.node.uninstall import uninstall

EXEC_STEPS = ("ecs-exec-certs", "ecs-exec-binaries")


def _run(ctx: InstallContext, steps: list[Any] | None = None) -> Any:
    return apply(ctx, Progress(io.StringIO(), tty=False), steps)


def _acting(ctx: InstallContext, steps: list[Any]) -> list[str]:
    return [p.step.name for p in plan(ctx, steps) if p.delta is not None]


def _exec_steps() -> list[Any]:
    return [ExecCertsStep(), ExecBinariesStep()]


def _mode(ctx: InstallContext, path: str) -> int | None:
    return ctx.host.mode(path)


def test_a_full_install_from_repo_makes_ecs_exec_ready_and_a_rerun_changes_nothing(
        node: Any) -> None:
    _, make_ctx, _ = node
    out = _run(make_ctx())
    assert set(EXEC_STEPS) <= set(out.changed)
    ctx = make_ctx(with_code=False)
    ready = ecs_exec.readiness(ctx.host)
    assert ready.ready and ready.version == "1.0"  # the scripted package's version
    assert _mode(ctx, ecs_exec.CA_BUNDLE) == 0o400
    assert ctx.host.read_text(ecs_exec.CA_BUNDLE) == \
        ctx.host.read_text("/etc/ssl/certs/ca-certificates.crt")
    for name in ecs_exec.BINARIES:
        path = f"{ecs_exec.BIN_DIR}/1.0/{name}"
        assert _mode(ctx, path) == 0o755
        assert ctx.host.read_bytes(path) == ctx.host.read_bytes(f"/usr/bin/{name}")
    # ECS Exec is in place before the agent's first start (AWS's order).
    names = [s.name for s in all_steps()]
    assert names.index("ecs-exec-binaries") < names.index("ecs-service")
    assert _acting(make_ctx(with_code=False), _exec_steps()) == []
    assert not set(EXEC_STEPS) & set(_run(make_ctx(with_code=False)).changed)
    # uninstall takes away what install made (no package owns it).
    uninstall(make_ctx(with_code=False))
    assert not ctx.host.exists(ecs_exec.ROOT)


def test_a_loosened_ca_bundle_is_tightened_again_and_ecs_restarted(node: Any) -> None:
    _, make_ctx, _ = node
    _run(make_ctx())
    ctx = make_ctx(with_code=False)
    ctx.host.path(ecs_exec.CA_BUNDLE).chmod(0o644)
    planned = {p.step.name: p.delta for p in plan(ctx, _exec_steps())}
    delta = planned["ecs-exec-certs"]
    assert delta is not None
    assert delta.summary == f"set mode 0400 on {ecs_exec.CA_BUNDLE}"
    assert [str(a) for a in delta.services] == ["restart ecs"]
    _run(ctx, _exec_steps())
    assert _mode(ctx, ecs_exec.CA_BUNDLE) == 0o400
    assert "ecs" in ctx.journal.pending_restarts()


def test_certs_file_is_what_gets_copied(node: Any) -> None:
    system, make_ctx, _ = node
    corp = "-----BEGIN CERTIFICATE-----\nCORP\n-----END CERTIFICATE-----\n"
    (system.root / "opt").mkdir()
    (system.root / "opt/corp-ca.pem").write_text(corp)
    ctx = make_ctx(certs_file="/opt/corp-ca.pem")
    _run(ctx, [ExecCertsStep()])
    assert ctx.host.read_text(ecs_exec.CA_BUNDLE) == corp


def test_a_missing_certs_file_stops_install_before_anything_changed(node: Any) -> None:
    system, make_ctx, _ = node
    before = sorted(p for p in system.root.rglob("*") if "anywhere-agent" not in str(p))
    with pytest.raises(ConfigError) as err:
        _run(make_ctx(certs_file="/opt/missing.pem"))
    assert err.value.message == "certs_file /opt/missing.pem does not exist"
    assert "--certs-file" in err.value.fix
    assert system.packages == {}
    assert sorted(p for p in system.root.rglob("*") if "anywhere-agent" not in str(p)) == before


def _aws_ctx(make_ctx: Any, served: dict[str, bytes]) -> tuple[InstallContext, list[str]]:
    ctx = make_ctx(package_source="aws", package_base_url="http://mirror.test/s3")
    asked: list[str] = []

    def fetch(url: str, proxies: dict[str, str]) -> Download:
        asked.append(url)
        return Download(url, 200, served[url]) if url in served else Download(url, 404, b"")

    ctx.source = PackageSource(ctx.cfg, ctx.host, ctx.platform, ctx.source.pm, fetch)
    return ctx, asked


def test_the_aws_source_takes_the_tarball_at_awss_pinned_version_from_its_s3_key(
        node: Any) -> None:
    _, make_ctx, _ = node
    url = ("http://mirror.test/s3/amazon-ssm-us-east-1/3.3.4108.0/linux_amd64/"
           "amazon-ssm-agent-binaries.tar.gz")
    ctx, asked = _aws_ctx(make_ctx, {url: exec_tarball("3.3.4108.0")})
    delta = plan(ctx, [ExecBinariesStep()])[0].delta
    assert delta is not None and delta.summary.endswith(f"bin/3.3.4108.0 from {url}")
    assert asked == []  # planning never downloads
    _run(ctx, _exec_steps())
    assert asked == [url]
    ready = ecs_exec.readiness(ctx.host)
    assert ready.ready and ready.version == "3.3.4108.0"
    worker = ctx.host.read_text(f"{ecs_exec.BIN_DIR}/3.3.4108.0/ssm-session-worker") or ""
    assert "ssm-session-worker 3.3.4108.0" in worker
    assert ctx.journal.data["ecs_exec_version"] == "3.3.4108.0"


def test_the_aws_source_names_the_fix_when_the_tarball_is_missing_or_not_a_tarball(
        node: Any) -> None:
    _, make_ctx, _ = node
    ctx, _ = _aws_ctx(make_ctx, {})
    with pytest.raises(PackageError) as err:
        _run(ctx, [ExecBinariesStep()])
    assert "returned HTTP 404" in err.value.message and "package_base_url" in err.value.fix
    url = ("http://mirror.test/s3/amazon-ssm-us-east-1/3.3.4108.0/linux_amd64/"
           "amazon-ssm-agent-binaries.tar.gz")
    ctx, _ = _aws_ctx(make_ctx, {url: b"<html>proxy login</html>"})
    with pytest.raises(PackageError) as err:
        _run(ctx, [ExecBinariesStep()])
    assert "is not a readable tar.gz" in err.value.message
    assert not ctx.host.exists(ecs_exec.BIN_DIR + "/3.3.4108.0/amazon-ssm-agent")


def _bundle(system: Any, tarball: bytes, version: str = "3.3.4108.0",
            digest: str | None = None) -> str:
    rel = f"agents/amazon-ssm-agent-binaries_{version}_amd64.tar.gz"
    bundle = system.root / "opt/bundle"
    (bundle / "agents").mkdir(parents=True, exist_ok=True)
    (bundle / rel).write_bytes(tarball)
    (bundle / "manifest.sha256").write_text(
        f"{digest or hashlib.sha256(tarball).hexdigest()}  {rel}\n")
    return "/opt/bundle"


def test_the_bundle_source_takes_the_tarball_the_bundle_carries(node: Any) -> None:
    system, make_ctx, _ = node
    bundle = _bundle(system, exec_tarball("3.3.4108.0"))
    ctx = make_ctx(package_source="bundle", bundle_dir=bundle)
    delta = plan(ctx, [ExecBinariesStep()])[0].delta
    assert delta is not None and delta.summary.endswith(
        "bin/3.3.4108.0 from bundle /opt/bundle/agents/"
        "amazon-ssm-agent-binaries_3.3.4108.0_amd64.tar.gz")
    _run(ctx, _exec_steps())
    assert ecs_exec.readiness(ctx.host).version == "3.3.4108.0"


def test_a_bundled_tarball_that_fails_its_checksum_is_refused(node: Any) -> None:
    system, make_ctx, _ = node
    bundle = _bundle(system, exec_tarball("3.3.4108.0"), digest="0" * 64)
    with pytest.raises(PackageError) as err:
        _run(make_ctx(package_source="bundle", bundle_dir=bundle), [ExecBinariesStep()])
    assert "does not match its checksum" in err.value.message


def test_repo_source_without_the_workers_in_the_package_names_the_fix(node: Any) -> None:
    system, make_ctx, _ = node
    _run(make_ctx(), all_steps()[:6])  # through the SSM agent's package
    (system.root / "usr/bin/ssm-session-worker").unlink()
    with pytest.raises(PackageError) as err:
        _run(make_ctx(with_code=False), [ExecBinariesStep()])
    assert "/usr/bin/ssm-session-worker" in err.value.message
    assert "package_source = aws" in err.value.fix


def test_enable_gpu_adds_dockers_nvidia_runtime_keeps_other_keys_and_converges(
        node: Any) -> None:
    system, make_ctx, _ = node
    (system.root / "etc/docker").mkdir(parents=True)
    (system.root / "etc/docker/daemon.json").write_text('{"log-driver": "journald"}\n')
    ctx = make_ctx(enable_gpu=True, docker_source="distro")
    step = docker_runtime_step()
    delta = plan(ctx, [step])[0].delta
    assert delta is not None and [str(a) for a in delta.services] == ["restart docker"]
    _run(ctx, [step])
    data = json.loads(ctx.host.read_text("/etc/docker/daemon.json") or "")
    assert data == {"log-driver": "journald",
                    "runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}}
    assert "docker" in ctx.journal.pending_restarts()
    assert plan(make_ctx(enable_gpu=True, docker_source="distro"), [step])[0].delta is None
    # Without enable_gpu, or with Docker left to the operator, the step does not apply.
    assert plan(make_ctx(docker_source="distro"), [step]) == []
    assert plan(make_ctx(enable_gpu=True, docker_source="none"), [step]) == []


def test_enable_gpu_writes_ecs_enable_gpu_support_for_the_agent(node: Any) -> None:
    _, make_ctx, _ = node
    ctx = make_ctx(enable_gpu=True)
    [var_config] = [s for s in all_steps() if s.name == "ecs-var-config"]
    _run(ctx, [var_config])
    assert "ECS_ENABLE_GPU_SUPPORT=true" in (ctx.host.read_text("/var/lib/ecs/ecs.config")
                                             or "").splitlines()


def test_uninstall_takes_out_only_the_runtime_install_added(node: Any) -> None:
    system, make_ctx, _ = node
    (system.root / "etc/docker").mkdir(parents=True)
    daemon = system.root / "etc/docker/daemon.json"
    daemon.write_text('{"log-driver": "journald"}\n')
    _run(make_ctx(enable_gpu=True, docker_source="distro"), [docker_runtime_step()])
    uninstall(make_ctx(with_code=False, enable_gpu=True, docker_source="distro"), force=True)
    assert json.loads(daemon.read_text()) == {"log-driver": "journald"}


def test_uninstall_removes_a_daemon_json_install_created_for_the_runtime(node: Any) -> None:
    system, make_ctx, _ = node
    _run(make_ctx(enable_gpu=True, docker_source="distro"), [docker_runtime_step()])
    daemon = system.root / "etc/docker/daemon.json"
    assert "nvidia" in json.loads(daemon.read_text())["runtimes"]
    uninstall(make_ctx(with_code=False), force=True)
    assert not daemon.exists()


def test_uninstall_keeps_a_runtime_the_operator_had_already(node: Any) -> None:
    system, make_ctx, _ = node
    (system.root / "etc/docker").mkdir(parents=True)
    daemon = system.root / "etc/docker/daemon.json"
    theirs = {"runtimes": {"nvidia": {"path": "/opt/nvidia/runtime", "runtimeArgs": []}}}
    daemon.write_text(json.dumps(theirs))
    ctx = make_ctx(enable_gpu=True, docker_source="distro")
    assert plan(ctx, [docker_runtime_step()])[0].delta is None
    uninstall(make_ctx(with_code=False), force=True)
    assert json.loads(daemon.read_text()) == theirs
