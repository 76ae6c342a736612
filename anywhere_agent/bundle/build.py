"""Build the air-gapped bundle: pinned wheels for the target Python/arch, the agent packages,
`requirements.txt`, `bundle.json` and `manifest.sha256` over every file.

Layout (what installer/install.sh and the node's `bundle` package source read):

    <out>/manifest.sha256     sha256sum format, every other file
    <out>/bundle.json         versions and target (top-level string keys, one per line)
    <out>/requirements.txt    exact pins: install.sh installs exactly these, offline
    <out>/wheels/             the project's wheel and all runtime dependencies
    <out>/agents/             amazon-ssm-agent and amazon-ecs-init (.deb or .rpm)
    <out>/install.sh          the installer, when building from a checkout
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform as pyplatform
import re
import shutil
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anywhere_agent import __version__
from anywhere_agent.bundle import agents
from anywhere_agent.bundle.manifest import MANIFEST, verify_bundle, write_manifest
from anywhere_agent.errors import PackageError, UsageError
from anywhere_agent.host import pins as agent_pins
from anywhere_agent.host.gateway import Runner, subprocess_runner
from anywhere_agent.install.sources import Fetcher, requests_fetcher

LOG = logging.getLogger(__name__)

FORMAT = 1
ARCHES = ("x86_64", "arm64")
FAMILIES = ("deb", "rpm")
# manylinux tags pip may take, most compatible first; 2.28 covers RHEL 8+, Debian 10+,
# Ubuntu 20.04+ (Amazon Linux 2 is 2.26: pure-Python and 2.17 wheels are preferred anyway).
_GLIBC_MINORS = range(17, 29)
_SOURCE_IGNORE = (".git", ".venv", "venv", "tests", "build", "dist", "*.egg-info", "__pycache__",
                  ".mypy_cache", ".ruff_cache", ".pytest_cache", "node_modules", "bench")
_DIST_RE = re.compile(r"^(?P<name>[A-Za-z0-9_.]+?)-(?P<version>[0-9][^-]*)(-|\.tar\.gz$|\.zip$)")


@dataclass(frozen=True)
class BundleSpec:
    """What to build; validated by `check()`."""

    out: Path
    arch: str
    distro_family: str
    python: str = "3.11"
    agents_from: Path | None = None
    region: str = "us-east-1"  # where the agents are downloaded from when online
    package_base_url: str = ""  # a mirror of AWS's S3 layout, as on a node
    signing_key: Path | None = None  # extra trusted key for the agents' signatures
    index_url: str = ""  # pip index for the wheels (default: pip's configuration)
    find_links: tuple[str, ...] = ()
    proxy: str = ""
    systemd_python: bool = True  # built here when the target matches this machine
    project: Path | None = None  # a source checkout or a built wheel; default: this one
    tarball: bool = False
    force: bool = False  # replace an existing bundle at `out`
    # Agent versions to carry (each a pin as in agent.toml); empty: the latest of each.
    ecs_agent_versions: tuple[str, ...] = ()
    ssm_agent_versions: tuple[str, ...] = ()

    def agent_versions(self) -> dict[str, tuple[str, ...]]:
        return {agent_pins.ECS_PACKAGE: self.ecs_agent_versions,
                agent_pins.SSM_PACKAGE: self.ssm_agent_versions}

    def check(self) -> None:
        if self.arch not in ARCHES:
            raise UsageError(f"unknown --arch {self.arch!r}", f"use one of {', '.join(ARCHES)}")
        if self.distro_family not in FAMILIES:
            raise UsageError(f"unknown --distro-family {self.distro_family!r}",
                             f"use one of {', '.join(FAMILIES)}")
        m = re.fullmatch(r"3\.([0-9]{1,2})", self.python)
        if not m or int(m.group(1)) < 9:
            raise UsageError(f"--python {self.python!r} is not a Python 3.9+ version",
                             "pass the node's python3 version, e.g. --python 3.11")

    def platforms(self) -> list[str]:
        machine = agents.RPM_ARCH[self.arch]
        tags = [f"manylinux_2_{minor}_{machine}" for minor in _GLIBC_MINORS]
        return [*tags, f"manylinux2014_{machine}"]

    def matches_this_machine(self) -> bool:
        here = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}
        return (here.get(pyplatform.machine()) == self.arch
                and f"{sys.version_info.major}.{sys.version_info.minor}" == self.python)


@dataclass
class BundleInfo:
    path: Path
    tarball: Path | None
    data: dict[str, Any] = field(default_factory=dict)
    size_bytes: int = 0
    manifest_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "tarball": str(self.tarball) if self.tarball else None,
                "size_bytes": self.size_bytes, "manifest_sha256": self.manifest_sha256,
                **self.data}


def _run_checked(run: Runner, argv: Sequence[str], what: str, fix: str,
                 timeout: float = 900.0) -> None:
    res = run(argv, timeout=timeout)
    if res.returncode != 0:
        raise PackageError(f"{what} failed: {res.last_line()}", fix)


def _pip(*args: str) -> list[str]:
    return [sys.executable, "-m", "pip", *args, "--disable-pip-version-check"]


def _index_args(spec: BundleSpec) -> list[str]:
    out: list[str] = []
    if spec.index_url:
        out += ["--index-url", spec.index_url]
    for link in spec.find_links:
        out += ["--find-links", link]
    if spec.proxy:
        out += ["--proxy", spec.proxy]
    return out


def default_project() -> Path:
    """The source checkout this package runs from (bundle/ -> anywhere_agent/ -> checkout)."""
    return Path(__file__).resolve().parents[2]


def project_wheel(spec: BundleSpec, wheels: Path, run: Runner) -> Path:
    """The project's own wheel into `wheels`: copied if given, else built from the checkout."""
    src = spec.project or default_project()
    if src.is_file() and src.suffix == ".whl":
        target = wheels / src.name
        shutil.copyfile(src, target)
        return target
    if not (src / "pyproject.toml").is_file():
        raise PackageError(f"{src} is neither a wheel nor a source checkout of anywhere-agent",
                           "pass --project with the project's wheel or checkout")
    with tempfile.TemporaryDirectory(prefix="anywhere-agent-src.") as tmp:
        # Building in a copy keeps build/ and *.egg-info out of the working tree.
        copy = Path(tmp) / "src"
        shutil.copytree(src, copy, ignore=shutil.ignore_patterns(*_SOURCE_IGNORE))
        _run_checked(run, _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                               str(copy)),
                     "pip wheel of anywhere-agent", "run `pip wheel .` in the checkout to see why")
    found = sorted(wheels.glob("anywhere_agent-*.whl"))
    if not found:
        raise PackageError("pip wheel produced no anywhere_agent wheel", "run `pip wheel .`")
    return found[-1]


def wheel_requirements(wheel: Path) -> list[str]:
    """Requires-Dist lines of a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def _marker_holds(marker: str, python: str) -> bool | None:
    """Evaluate `python_version <op> 'X.Y'` for the target; None for anything else."""
    m = re.fullmatch(r"""python_version\s*(<=|>=|==|!=|<|>)\s*['"]([0-9.]+)['"]""",
                     marker.strip())
    if not m:
        return None
    target = tuple(int(p) for p in python.split("."))
    want = tuple(int(p) for p in m.group(2).split("."))
    return {"<": target < want, "<=": target <= want, ">": target > want, ">=": target >= want,
            "==": target == want, "!=": target != want}[m.group(1)]


def target_requirements(wheel: Path, python: str, extras: Sequence[str] = ()
                        ) -> tuple[list[str], list[str]]:
    """(runtime requirements for the target Python, requirements of the chosen extras).

    pip download evaluates markers for the Python it runs on, not --python-version; the
    project's own `python_version` markers are evaluated here for the target instead.
    """
    runtime: list[str] = []
    extra: list[str] = []
    for req in wheel_requirements(wheel):
        spec, _, marker = req.partition(";")
        marker = marker.strip()
        if "extra ==" in marker:
            name = marker.split("==", 1)[1].strip().strip("'\"")
            if name in extras:
                extra.append(spec.strip())
            continue
        holds = _marker_holds(marker, python) if marker else True
        if holds is None:
            runtime.append(req.strip())
        elif holds:
            runtime.append(spec.strip())
    return runtime, extra


def download_wheels(spec: BundleSpec, wheel: Path, wheels: Path, run: Runner) -> None:
    runtime, _ = target_requirements(wheel, spec.python)
    argv = _pip("download", "--quiet", "--only-binary=:all:", "--implementation", "cp",
                "--python-version", spec.python, "--dest", str(wheels),
                "--find-links", str(wheels), *_index_args(spec))
    for tag in spec.platforms():
        argv += ["--platform", tag]
    _run_checked(run, [*argv, str(wheel), *runtime],
                 f"pip download of the runtime wheels for Python {spec.python}/{spec.arch}",
                 "check the index (--index-url, --proxy) has wheels for that target")


def add_systemd_python(spec: BundleSpec, wheel: Path, wheels: Path, run: Runner) -> str:
    """systemd-python has no wheels on PyPI: build one here when the target is this machine.

    It is optional at runtime (cli/logs.py falls back to stderr, which journald captures under
    systemd; supervise/notify.py speaks sd_notify with the stdlib), so a cross-target bundle
    leaves it out rather than make every node carry a compiler.
    """
    _, reqs = target_requirements(wheel, spec.python, extras=("systemd",))
    pinned = [r for r in reqs if r.replace("_", "-").lower().startswith("systemd-python")]
    if not spec.systemd_python or not pinned:
        return "omitted (--no-systemd-python)" if not spec.systemd_python else "omitted"
    if not spec.matches_this_machine():
        return (f"omitted: the target (Python {spec.python}, {spec.arch}) differs from this "
                "machine, and systemd-python builds only from source; logging goes to stderr "
                "(journald captures it)")
    _run_checked(run, _pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(wheels),
                           *_index_args(spec), *pinned),
                 "building the systemd-python wheel",
                 "apt-get install libsystemd-dev pkg-config gcc, or pass --no-systemd-python")
    return "wheel built on the build machine"


def pins(wheels: Path) -> dict[str, str]:
    """Distribution name -> exact version for every wheel (or sdist) in `wheels`."""
    out: dict[str, str] = {}
    for path in sorted(wheels.iterdir()):
        m = _DIST_RE.match(path.name)
        if not m:
            raise PackageError(f"cannot tell the version of {path.name}", "remove it and rebuild")
        name = re.sub(r"[-_.]+", "-", m.group("name")).lower()
        if name in out and out[name] != m.group("version"):
            raise PackageError(f"two versions of {name} in the bundle",
                               "build into an empty --out directory")
        out[name] = m.group("version")
    return out


def installer_script(project: Path | None) -> Path | None:
    src = project if project is not None and project.is_dir() else default_project()
    script = src / "installer" / "install.sh"
    return script if script.is_file() else None


def install_id(bundle: Path) -> str:
    """Identity of what install.sh puts in the venv: requirements + every wheel's digest."""
    digest = hashlib.sha256((bundle / "requirements.txt").read_bytes())
    for path in sorted((bundle / "wheels").iterdir()):
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _prepare_out(spec: BundleSpec) -> Path:
    out = spec.out
    if out.exists() and any(out.iterdir()):
        is_bundle = (out / MANIFEST).is_file() and (out / "bundle.json").is_file()
        if not (spec.force and is_bundle):
            raise UsageError(f"{out} is not empty",
                             "choose an empty --out, or pass --force to replace a bundle there")
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def build_bundle(spec: BundleSpec, *, run: Runner = subprocess_runner,
                 fetch: Fetcher = requests_fetcher) -> BundleInfo:
    """Build the bundle at `spec.out` (atomically: it appears whole or not at all)."""
    spec.check()
    stage = _prepare_out(spec)
    try:
        wheels, agent_dir = stage / "wheels", stage / "agents"
        wheels.mkdir()
        agent_dir.mkdir()
        wheel = project_wheel(spec, wheels, run)
        project_version = _DIST_RE.match(wheel.name)
        download_wheels(spec, wheel, wheels, run)
        systemd_note = add_systemd_python(spec, wheel, wheels, run)
        pinned = pins(wheels)
        (stage / "requirements.txt").write_text(
            "# exact pins: install.sh installs these with --no-index from wheels/\n"
            + "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items())))
        if spec.agents_from is not None:
            packages = agents.from_dir(spec.agents_from, agent_dir, spec.arch,
                                       spec.distro_family, run, spec.agent_versions())
        else:
            proxies = {"http": spec.proxy, "https": spec.proxy} if spec.proxy else {}
            packages = agents.download(agent_dir, spec.arch, spec.distro_family,
                                       region=spec.region, package_base_url=spec.package_base_url,
                                       signing_key=spec.signing_key, proxies=proxies,
                                       fetch=fetch, run=run, versions=spec.agent_versions())
        exec_binaries = _ecs_exec_binaries(spec, agent_dir, fetch)
        script = installer_script(spec.project)
        if script is not None:
            shutil.copyfile(script, stage / "install.sh")
            os.chmod(stage / "install.sh", 0o755)  # noqa: S103 - a script others run
        data = {
            "format": FORMAT,
            "project_version": project_version.group("version") if project_version
            else __version__,
            "target_arch": spec.arch,
            "distro_family": spec.distro_family,
            "python_version": spec.python,
            "install_id": install_id(stage),
            "built_with": f"anywhere-agent {__version__}, Python {pyplatform.python_version()}",
            "wheels": pinned,
            "systemd_python": systemd_note,
            # The newest carried version of each agent; agent_files lists every one.
            "agents": {p.package: p.to_dict()
                       for p in sorted(packages, key=lambda p: agent_pins.version_key(p.version))},
            "agent_files": [{"package": p.package, **p.to_dict()} for p in packages],
            "ecs_exec": exec_binaries.to_dict() if exec_binaries else None,
        }
        (stage / "bundle.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        write_manifest(stage)
        verify_bundle(stage)  # what we hand out must pass the check the node makes
        os.chmod(stage, 0o755)  # noqa: S103 - mkdtemp made it 0700; a bundle is public
        if spec.out.exists():
            shutil.rmtree(spec.out)
        os.replace(stage, spec.out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    size = sum(p.stat().st_size for p in spec.out.rglob("*") if p.is_file())
    tar = make_tarball(spec.out) if spec.tarball else None
    digest = hashlib.sha256((spec.out / MANIFEST).read_bytes()).hexdigest()
    return BundleInfo(spec.out, tar, data, size, digest)


def _ecs_exec_binaries(spec: BundleSpec, agent_dir: Path,
                       fetch: Fetcher) -> agents.AgentPackage | None:
    """ECS Exec's binaries tarball: from --agents-from when it holds one, else downloaded."""
    from anywhere_agent.bundle import ecs_exec

    if spec.agents_from is not None:
        return ecs_exec.from_dir(spec.agents_from, agent_dir, spec.arch)
    proxies = {"http": spec.proxy, "https": spec.proxy} if spec.proxy else {}
    return ecs_exec.download(agent_dir, spec.arch, region=spec.region,
                             package_base_url=spec.package_base_url, proxies=proxies,
                             fetch=fetch)


def make_tarball(bundle: Path) -> Path:
    """`<bundle>.tar.gz` with the bundle as its one top-level directory."""
    target = bundle.with_name(bundle.name + ".tar.gz")
    tmp = target.with_name(f".{target.name}.tmp")

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(tmp, "w:gz") as tar:
        tar.add(bundle, arcname=bundle.name, filter=clean)
    os.replace(tmp, target)
    return target
