"""Cached lab images: a debootstrap base rootfs plus a node layer with the dependency wheels."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anywhere_agent.errors import LabError
from anywhere_agent.lab import system

LOG = logging.getLogger(__name__)

CACHE_ROOT = Path("/var/cache/anywhere-agent-lab")
VENV = "/opt/anywhere-agent/venv"
BUILD_LOCK_TIMEOUT = 1800.0  # a cold build of both layers takes a few minutes

BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-venv",
    "gpg",
    "procps",
    "iproute2",
    "ca-certificates",
)

# Units that only cost boot time or try the network in a lab host.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "systemd-firstboot.service",
    "console-getty.service",
    "getty@.service",
    "systemd-timesyncd.service",
)

SSHD_DROPIN = """\
# anywhere-agent lab: root by key only, fast logins on a network without DNS.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
HostKey /etc/ssh/ssh_host_ed25519_key
"""

# Keep later apt installs (the agent doubles) as lean as the image.
DPKG_NODOC = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
"""

# glibc falls back to 127.0.0.1 with no nameserver line: lookups fail at once, not after 5 s.
RESOLV_CONF = (
    "# anywhere-agent lab host: no DNS, names come from /etc/hosts\noptions timeout:1 attempts:1\n"
)


def _digest(data: object) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class BaseRecipe:
    """Everything that decides the base rootfs; its hash names the cache entry."""

    suite: str = "bookworm"
    variant: str = "minbase"
    packages: tuple[str, ...] = BASE_PACKAGES
    masked_units: tuple[str, ...] = MASKED_UNITS
    sshd_config: str = SSHD_DROPIN
    dpkg_nodoc: str = DPKG_NODOC
    resolv_conf: str = RESOLV_CONF
    revision: int = 1  # bump when _finish_base changes

    def key(self) -> str:
        return _digest(asdict(self))


def runtime_requirements(
    dist: str = "anywhere-agent", extras: tuple[str, ...] = ("systemd",)
) -> tuple[str, ...]:
    """The product's runtime requirements (with the given extras), markers kept for pip."""
    reqs = importlib.metadata.requires(dist) or []
    out: list[str] = []
    for req in reqs:
        spec, _, marker = req.partition(";")
        marker = marker.strip()
        if "extra" not in marker:
            out.append(req.strip())
            continue
        # Markers here are exactly `extra == "name"`; keep the requirement of chosen extras.
        name = marker.split("==", 1)[-1].strip().strip("'\"")
        if name in extras:
            out.append(spec.strip())
    return tuple(sorted(set(out)))


@dataclass(frozen=True)
class NodeRecipe:
    """The node layer on top of a base: a venv holding the runtime dependency wheels."""

    base_key: str
    requirements: tuple[str, ...] = field(default_factory=runtime_requirements)
    python_tag: str = f"cp{sys.version_info.major}{sys.version_info.minor}"
    venv: str = VENV
    revision: int = 2  # bump when ensure_node changes

    def key(self) -> str:
        return _digest(asdict(self))

    def wheel_key(self) -> str:
        return _digest({"requirements": self.requirements, "python_tag": self.python_tag})


@dataclass(frozen=True)
class Images:
    """Paths of a ready base rootfs and node layer (lowerdirs, top first)."""

    base: Path
    node: Path
    wheelhouse: Path
    build_seconds: dict[str, float]

    def lowerdirs(self) -> str:
        return f"{self.node}:{self.base}"


class ImageCache:
    """Builds each image once under a lock, atomically: a crash leaves only a `.tmp` to discard."""

    def __init__(
        self,
        root: Path = CACHE_ROOT,
        mirror: str | None = None,
        base: BaseRecipe | None = None,
    ) -> None:
        self.root = root
        # No mirror in the repo: the caller's, the environment's, or this machine's apt's.
        self.mirror = mirror or os.environ.get("ANYWHERE_LAB_MIRROR") or _apt_mirror()
        self.base_recipe = base or BaseRecipe()

    def ensure(self) -> Images:
        system.require_root()
        self.root.mkdir(parents=True, exist_ok=True)
        seconds: dict[str, float] = {}
        base = self.ensure_base(seconds)
        recipe = NodeRecipe(base_key=self.base_recipe.key())
        wheels = self.ensure_wheelhouse(recipe, seconds)
        node = self.ensure_node(recipe, base, wheels, seconds)
        return Images(base=base, node=node, wheelhouse=wheels, build_seconds=seconds)

    # -- generic cache entry -------------------------------------------------------------

    def _entry(self, kind: str, key: str) -> tuple[Path, Path, Path]:
        final = self.root / f"{kind}-{key}"
        return final, Path(f"{final}.tmp"), Path(f"{final}.json")

    def _begin(self, tmp: Path) -> None:
        if tmp.exists():
            LOG.warning("discarding half-built image %s (an earlier build crashed)", tmp)
            system.remove_tree(tmp)

    def _commit(self, tmp: Path, final: Path, meta: Path, info: dict[str, object]) -> None:
        meta.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, final)  # the rename is the commit point: final exists only when whole

    # -- base ----------------------------------------------------------------------------

    def ensure_base(self, seconds: dict[str, float]) -> Path:
        key = self.base_recipe.key()
        final, tmp, meta = self._entry("base", key)
        if final.is_dir():
            return final
        with system.file_lock(
            self.root / f"base-{key}.lock", BUILD_LOCK_TIMEOUT, "base image build"
        ):
            if final.is_dir():
                return final
            system.require_tools("debootstrap")
            self._begin(tmp)
            started = time.monotonic()
            LOG.warning("building lab base image %s (debootstrap, about a minute)", key)
            argv = [
                "debootstrap",
                f"--variant={self.base_recipe.variant}",
                "--include=" + ",".join(self.base_recipe.packages),
                self.base_recipe.suite,
                str(tmp),
                self.mirror,
            ]
            try:
                system.run(argv, timeout=1200, what="debootstrap")
            finally:
                # debootstrap mounts proc/sys in the target; never leave them behind.
                system.unmount_under(tmp)
            self._finish_base(tmp)
            took = time.monotonic() - started
            seconds["base"] = round(took, 1)
            self._commit(
                tmp,
                final,
                meta,
                {
                    "recipe": asdict(self.base_recipe),
                    "build_seconds": took,
                    "mirror": self.mirror,
                    "built_at": time.time(),
                },
            )
            # Older recipes are dead weight once a new one is built.
            self._prune("base", key)
            return final

    def _finish_base(self, root: Path) -> None:
        """Make the debootstrap tree a lab host template (pure file edits, no chroot)."""
        r = self.base_recipe
        (root / "etc/machine-id").write_text("")  # empty: each host gets its own id
        dbus_id = root / "var/lib/dbus/machine-id"
        if dbus_id.exists() and not dbus_id.is_symlink():
            dbus_id.unlink()
        for key in (root / "etc/ssh").glob("ssh_host_*"):
            key.unlink()  # shared host keys would make every host the same to ssh
        (root / "etc/ssh/sshd_config.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/ssh/sshd_config.d/anywhere-lab.conf").write_text(r.sshd_config)
        (root / "root/.ssh").mkdir(mode=0o700, exist_ok=True)
        (root / "etc/dpkg/dpkg.cfg.d/01-anywhere-lab-nodoc").write_text(r.dpkg_nodoc)
        (root / "etc/apt/sources.list").write_text("")  # hosts use only the lab repo
        resolv = root / "etc/resolv.conf"
        if resolv.is_symlink() or resolv.exists():
            resolv.unlink()
        resolv.write_text(r.resolv_conf)
        (root / "etc/hostname").write_text("lab-host\n")
        masked = root / "etc/systemd/system"
        masked.mkdir(parents=True, exist_ok=True)
        for unit in r.masked_units:
            link = masked / unit
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to("/dev/null")
        for rel in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale"):
            target = root / rel
            if target.is_dir():
                for child in target.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
        for rel in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for child in (root / rel).glob("*"):
                if child.is_file():
                    child.unlink()
        for bin_cache in (root / "var/cache/apt").glob("*.bin"):
            bin_cache.unlink()
        for log in (root / "var/log").glob("*.log"):
            log.write_text("")

    def _prune(self, kind: str, keep: str) -> None:
        for old in self.root.glob(f"{kind}-*"):
            if old.name in (f"{kind}-{keep}", f"{kind}-{keep}.json", f"{kind}-{keep}.lock"):
                continue
            if old.suffix in (".lock", ".tmp", ".layer"):
                continue  # another process may be building a different recipe right now
            # A stale image may still be some running lab's lowerdir: keep it if mounted.
            if old.is_dir() and _used_as_lower(old):
                continue
            LOG.info("removing outdated image %s", old)
            if old.is_dir():
                system.remove_tree(old)
            else:
                old.unlink(missing_ok=True)

    # -- wheelhouse ----------------------------------------------------------------------

    def ensure_wheelhouse(self, recipe: NodeRecipe, seconds: dict[str, float]) -> Path:
        key = recipe.wheel_key()
        final, tmp, meta = self._entry("wheels", key)
        if final.is_dir():
            return final
        with system.file_lock(self.root / f"wheels-{key}.lock", BUILD_LOCK_TIMEOUT, "wheel build"):
            if final.is_dir():
                return final
            self._begin(tmp)
            tmp.mkdir(parents=True)
            started = time.monotonic()
            LOG.warning("building dependency wheels for lab hosts (pip wheel)")
            argv = [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--wheel-dir",
                str(tmp),
                *recipe.requirements,
            ]
            try:
                system.run(argv, timeout=900, what="pip wheel of the runtime dependencies")
            except LabError as exc:
                raise LabError(
                    exc.message,
                    "systemd-python needs `apt-get install libsystemd-dev pkg-config gcc`; "
                    "pip needs to reach PyPI",
                ) from exc
            took = time.monotonic() - started
            seconds["wheels"] = round(took, 1)
            self._commit(
                tmp,
                final,
                meta,
                {
                    "requirements": list(recipe.requirements),
                    "build_seconds": took,
                    "built_at": time.time(),
                },
            )
            return final

    # -- node layer ----------------------------------------------------------------------

    def ensure_node(
        self, recipe: NodeRecipe, base: Path, wheels: Path, seconds: dict[str, float]
    ) -> Path:
        key = recipe.key()
        final, tmp, meta = self._entry("node", key)
        if final.is_dir():
            return final
        with system.file_lock(
            self.root / f"node-{key}.lock", BUILD_LOCK_TIMEOUT, "node layer build"
        ):
            if final.is_dir():
                return final
            system.require_tools("systemd-nspawn", "mount")
            self._begin(tmp)
            upper, work, merged = tmp / "upper", tmp / "work", tmp / "merged"
            for d in (upper, work, merged):
                d.mkdir(parents=True)
            started = time.monotonic()
            LOG.warning("building lab node layer %s (venv with the product's dependencies)", key)
            system.mount_overlay(base, upper, work, merged, "overlay mount for the node layer")
            try:
                self._in_root(merged, wheels, ["/usr/bin/python3", "-m", "venv", recipe.venv])
                self._in_root(
                    merged,
                    wheels,
                    [
                        f"{recipe.venv}/bin/pip",
                        "install",
                        "--quiet",
                        "--no-index",
                        "--disable-pip-version-check",
                        "--no-cache-dir",
                        "--find-links",
                        "/mnt/wheels",
                        *recipe.requirements,
                    ],
                )
                # Proves the wheels built here (pyenv 3.11) load on Debian's 3.11.
                self._in_root(
                    merged,
                    wheels,
                    [
                        f"{recipe.venv}/bin/python",
                        "-c",
                        "import boto3, botocore, psutil, requests, typer, tenacity, "
                        "systemd.journal, systemd.daemon",
                    ],
                )
            finally:
                system.unmount_under(merged)
            # nspawn may have created these mount points; they must not shadow a host's own.
            for rel in ("etc/machine-id", "etc/resolv.conf", "etc/hostname"):
                leftover = upper / rel
                if leftover.exists() or leftover.is_symlink():
                    leftover.unlink()
            (upper / "mnt/wheels").rmdir()
            shutil.rmtree(work)
            merged.rmdir()
            layer = tmp.with_name(tmp.name + ".layer")
            self._begin(layer)
            os.replace(upper, layer)
            shutil.rmtree(tmp)
            took = time.monotonic() - started
            seconds["node"] = round(took, 1)
            self._commit(
                layer,
                final,
                meta,
                {"recipe": asdict(recipe), "build_seconds": took, "built_at": time.time()},
            )
            self._prune("node", key)
            return final

    def _in_root(self, root: Path, wheels: Path, argv: list[str]) -> None:
        system.run(
            [
                "systemd-nspawn",
                "--quiet",
                "--register=no",
                "--keep-unit",
                "--private-network",
                "--resolv-conf=off",
                "--timezone=off",
                "--link-journal=no",
                "-D",
                str(root),
                f"--bind-ro={wheels}:/mnt/wheels",
                "--",
                *argv,
            ],
            timeout=600,
            what=f"{argv[0]} in the node layer",
        )


def _apt_mirror() -> str:
    from anywhere_agent.lab import aptcache

    release = aptcache.codename(Path("/etc/os-release").read_text())
    found = aptcache.main_mirror(aptcache.upstreams_from_apt(), release)
    if found is None:
        raise LabError(
            f"this machine's apt has no http(s) repository for {release or 'its release'}",
            "add the Debian mirror to /etc/apt/sources.list(.d), or set ANYWHERE_LAB_MIRROR",
        )
    return found


def _used_as_lower(path: Path) -> bool:
    needle = str(path)
    return any(
        needle in line
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.startswith("overlay ")
    )


def image_info(root: Path = CACHE_ROOT) -> list[dict[str, object]]:
    """What the cache holds (for `lab status`)."""
    out: list[dict[str, object]] = []
    for meta in sorted(root.glob("*.json")):
        try:
            data = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        out.append(
            {
                "name": meta.stem,
                "build_seconds": round(float(data.get("build_seconds", 0)), 1),
                "present": meta.with_suffix("").is_dir(),
            }
        )
    return out
