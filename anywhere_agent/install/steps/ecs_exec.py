"""ECS Exec's dependencies where AWS's install script puts them: the host's CA bundle and the
SSM agent binaries that the ECS agent bind-mounts into exec-enabled tasks."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile

from anywhere_agent.errors import ConfigError, PackageError
from anywhere_agent.host import agent_files, ecs_exec
from anywhere_agent.install import sources
from anywhere_agent.install.context import InstallContext
from anywhere_agent.install.steps.base import Delta, Step, UnitAction, Verb

# In a bundle: agents/amazon-ssm-agent-binaries_<version>_<arch>.tar.gz (bundle/agents.py).
_BUNDLED = re.compile(r"(?:.*/)?amazon-ssm-agent-binaries_(?P<version>\d+(?:\.\d+)*)_"
                      r"(?P<arch>[a-z0-9_]+)\.tar\.gz")
# The tarball holds three binaries of some tens of MB; anything far larger is not it.
_MAX_TARBALL = 512 * 1024 * 1024


def _restart_ecs(ctx: InstallContext) -> None:
    # The agent decides at start whether it offers ECS Exec: a change needs a restart.
    ctx.journal.add_pending_restart(agent_files.ECS_UNIT)


class ExecCertsStep(Step):
    """The CA bundle (certs_file, else the first known location) copied to AWS's path, 0400."""

    name, title = "ecs-exec-certs", "CA bundle for ECS Exec"

    def _source(self, ctx: InstallContext) -> str:
        found = ecs_exec.find_ca_bundle(ctx.host, ctx.cfg.certs_file)
        if found is None:
            if ctx.cfg.certs_file:
                raise ConfigError(f"certs_file {ctx.cfg.certs_file} does not exist",
                                  "point certs_file (--certs-file) at the host's PEM CA bundle")
            raise ConfigError("no CA bundle for ECS Exec at any known location",
                              "install ca-certificates, or " + ecs_exec.CERTS_FIX)
        return found

    def guard(self, ctx: InstallContext) -> None:
        source = self._source(ctx)
        if not ecs_exec.is_pem_bundle(ctx.host.read_bytes(source)):
            raise ConfigError(f"{source} holds no PEM certificate", ecs_exec.CERTS_FIX)

    def check(self, ctx: InstallContext) -> Delta | None:
        source = self._source(ctx)
        want = ctx.host.read_bytes(source)
        have = ctx.host.read_bytes(ecs_exec.CA_BUNDLE)
        mode = ctx.host.mode(ecs_exec.CA_BUNDLE)
        config_dir = ctx.host.exists(ecs_exec.CONFIG_DIR)
        if have == want and mode == ecs_exec.CA_BUNDLE_MODE and config_dir:
            return None
        if have is None:
            what = f"copy {source} to {ecs_exec.CA_BUNDLE} (mode 0400)"
        elif have != want:
            what = f"update {ecs_exec.CA_BUNDLE} from {source} (mode 0400)"
        elif mode != ecs_exec.CA_BUNDLE_MODE:
            what = f"set mode 0400 on {ecs_exec.CA_BUNDLE}"
        else:
            what = f"create {ecs_exec.CONFIG_DIR}"
        # No diff: a CA bundle is hundreds of certificates, and public.
        return Delta(what, services=[UnitAction(Verb.RESTART, agent_files.ECS_UNIT)],
                     data={"source": source})

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        source = str(delta.data["source"])
        data = ctx.host.read_bytes(source)
        if data is None:
            raise ConfigError(f"CA bundle {source} disappeared during install",
                              "run install again")
        _restart_ecs(ctx)
        ctx.host.ensure_dir(ecs_exec.CONFIG_DIR)
        ctx.host.write_atomic(ecs_exec.CA_BUNDLE, data, ecs_exec.CA_BUNDLE_MODE)
        return [f"{ecs_exec.CA_BUNDLE} from {source}"]


def tarball_url(ctx: InstallContext) -> str:
    """AWS's S3 URL of the binaries tarball (or the mirror's, package_base_url)."""
    key = ecs_exec.tarball_key(ctx.cfg.region, ctx.platform.arch)
    if ctx.cfg.package_base_url:
        return f"{ctx.cfg.package_base_url.rstrip('/')}/{key}"
    suffix = "amazonaws.com.cn" if ctx.cfg.region.startswith("cn-") else "amazonaws.com"
    return f"{sources.S3_BASE.format(region=ctx.cfg.region, suffix=suffix)}/{key}"


def binaries_from_tarball(data: bytes, origin: str) -> dict[str, bytes]:
    """The three binaries, by name, from amazon-ssm-agent-binaries.tar.gz (top level, as AWS
    packs it; a leading directory is tolerated). Nothing is extracted to disk by path."""
    if len(data) > _MAX_TARBALL:
        raise PackageError(f"{origin} is larger than {_MAX_TARBALL >> 20} MiB",
                           "check package_base_url points at AWS's layout")
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if member.isfile() and name in ecs_exec.BINARIES and name not in found:
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[name] = handle.read()
    except (tarfile.TarError, OSError, EOFError) as err:
        raise PackageError(f"{origin} is not a readable tar.gz ({err})",
                           "download it again (a proxy may have cut it short)") from None
    missing = [n for n in ecs_exec.BINARIES if n not in found]
    if missing:
        raise PackageError(f"{origin} lacks {', '.join(missing)}",
                           "use AWS's amazon-ssm-agent-binaries.tar.gz")
    return found


def _upstream(version: str) -> str:
    """The agent's own version from a package version (3.3.1802.0-1 -> 3.3.1802.0)."""
    base = version.split(":", 1)[-1]
    return re.split(r"[-~+]", base, maxsplit=1)[0]


class ExecBinariesStep(Step):
    """amazon-ssm-agent, ssm-agent-worker and ssm-session-worker under bin/<version>/, 0755.

    aws: the tarball AWS's script downloads (its pinned version) from the S3 layout or the
    mirror; bundle: the tarball the bundle carries (sha256 manifest); repo, or a bundle built
    without the tarball: the same three binaries from the amazon-ssm-agent package installed
    from the host's repositories, under that package's version.
    """

    name, title = "ecs-exec-binaries", "SSM agent binaries for ECS Exec"

    def _bundled(self, ctx: InstallContext) -> tuple[str, str] | None:
        """(relative path, version) of the bundle's tarball for this arch, if it carries one."""
        arches = {ctx.platform.arch, ctx.platform.machine}
        for rel in sorted(ctx.source.bundle_manifest(), reverse=True):
            m = _BUNDLED.fullmatch(rel)
            if m and m.group("arch") in arches:
                return rel, m.group("version")
        return None

    def _plan(self, ctx: InstallContext) -> tuple[str | None, str]:
        """(version or None when not known before the package is installed, where from)."""
        source = ctx.cfg.package_source
        if source == "aws":
            return ecs_exec.SSM_BINARIES_VERSION, tarball_url(ctx)
        if source == "bundle":
            bundled = self._bundled(ctx)
            if bundled is not None:
                return bundled[1], f"bundle {ctx.cfg.bundle_dir}/{bundled[0]}"
        installed = ctx.source.pm.installed_version(agent_files.SSM_PACKAGE)
        return (_upstream(installed) if installed else None,
                f"the {agent_files.SSM_PACKAGE} package's /usr/bin")

    def check(self, ctx: InstallContext) -> Delta | None:
        version, origin = self._plan(ctx)
        if version is not None:
            folder = f"{ecs_exec.BIN_DIR}/{version}"
            modes = [ctx.host.mode(f"{folder}/{n}") for n in ecs_exec.BINARIES]
            if all(m == ecs_exec.BINARY_MODE for m in modes):
                return None
        shown = version or f"<{agent_files.SSM_PACKAGE} version>"
        return Delta(f"put {', '.join(ecs_exec.BINARIES)} in {ecs_exec.BIN_DIR}/{shown} "
                     f"from {origin}", services=[UnitAction(Verb.RESTART, agent_files.ECS_UNIT)])

    def _binaries(self, ctx: InstallContext) -> tuple[str, dict[str, bytes], str]:
        source = ctx.cfg.package_source
        if source == "aws":
            url = tarball_url(ctx)
            return ecs_exec.SSM_BINARIES_VERSION, binaries_from_tarball(
                ctx.source.fetch(url), url), url
        if source == "bundle":
            bundled = self._bundled(ctx)
            if bundled is not None:
                rel, version = bundled
                data = ctx.host.read_bytes(f"{ctx.cfg.bundle_dir}/{rel}")
                if data is None or hashlib.sha256(data).hexdigest() != \
                        ctx.source.bundle_manifest()[rel]:
                    raise PackageError(f"bundle file {rel} does not match its checksum",
                                       "copy the bundle again from a trusted build")
                return version, binaries_from_tarball(data, rel), f"bundle {rel}"
        installed = ctx.source.pm.installed_version(agent_files.SSM_PACKAGE)
        found = {n: ctx.host.read_bytes(f"/usr/bin/{n}") for n in ecs_exec.BINARIES}
        missing = [n for n, d in found.items() if d is None]
        if not installed or missing:
            raise PackageError(
                f"the {agent_files.SSM_PACKAGE} package has no /usr/bin/"
                f"{', /usr/bin/'.join(missing or ecs_exec.BINARIES)} for ECS Exec",
                "install AWS's amazon-ssm-agent package (it ships all three), or use "
                "package_source = aws or a bundle that carries amazon-ssm-agent-binaries")
        return _upstream(installed), {n: d or b"" for n, d in found.items()}, \
            f"{agent_files.SSM_PACKAGE} {installed}"

    def apply(self, ctx: InstallContext, delta: Delta) -> list[str]:
        version, binaries, origin = self._binaries(ctx)
        folder = f"{ecs_exec.BIN_DIR}/{version}"
        _restart_ecs(ctx)
        ctx.host.ensure_dir(folder)
        for name in ecs_exec.BINARIES:
            ctx.host.write_atomic(f"{folder}/{name}", binaries[name], ecs_exec.BINARY_MODE)
        ctx.journal.record_ecs_exec_version(version)
        return [f"{folder} from {origin}"]
