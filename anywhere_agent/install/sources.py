"""Package sources for the SSM agent and ecs-init: AWS's S3 layout (signed), repos, bundles."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from anywhere_agent.config import Config
from anywhere_agent.errors import ConfigError, NetworkError, PackageError
from anywhere_agent.host import agent_files, aptsources, pins
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import Platform

LOG = logging.getLogger(__name__)

# AWS's download layout as the official ecs-anywhere-install.sh uses it (path-style S3 URLs);
# a mirror (package_base_url) keeps the same relative paths.
S3_BASE = "https://s3.{region}.{suffix}"
# {version} is `latest`, or a pinned version as host/pins.py spells it for each package (the
# script's --ecs-version fills ecs-init's; the SSM agent's versions are directories).
PATHS = {
    ("amazon-ssm-agent", "deb"):
        "amazon-ssm-{region}/{version}/debian_{arch}/amazon-ssm-agent.deb",
    ("amazon-ssm-agent", "rpm"):
        "amazon-ssm-{region}/{version}/linux_{arch}/amazon-ssm-agent.rpm",
    ("amazon-ecs-init", "deb"): "amazon-ecs-agent-{region}/amazon-ecs-init-{version}.{arch}.deb",
    ("amazon-ecs-init", "rpm"): "amazon-ecs-agent-{region}/amazon-ecs-init-{version}.{alt}.rpm",
}
# Detached signatures: AWS signs the SSM agent with `.sig`, ecs-init with `.asc`.
SIGNATURE_SUFFIX = {"amazon-ssm-agent": ".sig", "amazon-ecs-init": ".asc"}
# Public keys the official script fetches, and the fingerprints we pin them to: a SET per
# package. The SSM key file carries a rotating series of keys that expire; a signature by any
# key whose primary fingerprint is pinned is accepted, and `package_signing_fingerprints` in
# agent.toml adds the next key of a rotation without a new release (eks-hybrid#864).
KEY_URLS = {
    "amazon-ecs-init":
        "https://raw.githubusercontent.com/aws/amazon-ecs-agent/master/scripts/amazon-ecs-agent.gpg",
    "amazon-ssm-agent":
        "https://raw.githubusercontent.com/aws/amazon-ecs-agent/master/scripts/amazon-ssm-agent.gpg",
}
PINNED_FINGERPRINTS: Mapping[str, frozenset[str]] = {
    "amazon-ecs-init": frozenset({
        "F34C3DDAE72926B079BEAEC6BCE9D9A42D51784F",  # Amazon ECS (no expiry)
    }),
    "amazon-ssm-agent": frozenset({
        "1C5B395CBE5E74E2F1CA21592784DBF388D19D46",  # SSM agent (current in its series)
    }),
}
KEYS_DIR = "/etc/anywhere-agent/keys"  # operator- or bundle-provided *.asc / *.gpg keys
BUNDLE_MANIFEST = "manifest.sha256"
_ALT_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}


def package_url(cfg: Config, platform: Platform, package: str) -> str:
    fmt = "deb" if platform.family == "deb" else "rpm"
    version = pins.s3_version(package, pins.pinned(cfg, package))
    rel = PATHS[(package, fmt)].format(region=cfg.region, arch=platform.arch,
                                       alt=_ALT_ARCH[platform.arch], version=version)
    if cfg.package_base_url:
        return f"{cfg.package_base_url.rstrip('/')}/{rel}"
    suffix = "amazonaws.com.cn" if cfg.region.startswith("cn-") else "amazonaws.com"
    return f"{S3_BASE.format(region=cfg.region, suffix=suffix)}/{rel}"


@dataclass(frozen=True)
class Download:
    url: str
    status: int
    body: bytes


Fetcher = Callable[[str, dict[str, str]], Download]


def requests_fetcher(url: str, proxies: dict[str, str]) -> Download:
    """GET with bounded retries (tenacity) for transient network errors and 5xx."""
    import requests
    from tenacity import (
        retry,
        retry_if_exception_type,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )

    class _Transient(Exception):
        pass

    @retry(stop=stop_after_attempt(4) | stop_after_delay(60),
           wait=wait_exponential(multiplier=0.5, max=8),
           retry=retry_if_exception_type((_Transient, requests.ConnectionError,
                                          requests.Timeout)),
           reraise=True)
    def get() -> Download:
        resp = requests.get(url, proxies=proxies or None, timeout=(5, 60))
        if resp.status_code >= 500:
            raise _Transient(str(resp.status_code))
        return Download(url, resp.status_code, resp.content)

    try:
        return get()
    except (requests.RequestException, _Transient) as err:
        raise NetworkError(f"cannot download {url}: {type(err).__name__}",
                           "check network/proxy or use package_source = repo or bundle") from None


@dataclass(frozen=True)
class IndexRefresh:
    """One fetch of the package index this run made: of `source_files` only, or (none
    named) of every source, and why."""

    packages: tuple[str, ...]
    source_files: tuple[str, ...] = ()
    reason: str = ""

    @property
    def note(self) -> str:
        named = ", ".join(self.packages)
        if self.source_files:
            return (f"refreshed the index of {', '.join(self.source_files)} only"
                    f"{f' (offering {named})' if named else ''}")
        return (f"refreshed the whole package index{f' for {named}' if named else ''}"
                f"{f': {self.reason}' if self.reason else ''}")

    def to_dict(self) -> dict[str, object]:
        return {"scope": "sources" if self.source_files else "all",
                "source_files": list(self.source_files), "packages": list(self.packages),
                "reason": self.reason}


class PackageSource:
    """Puts a named package on the host from the configured source."""

    def __init__(self, cfg: Config, host: Host, platform: Platform, pm: PackageManager,
                 fetch: Fetcher = requests_fetcher,
                 pins: Mapping[str, frozenset[str]] = PINNED_FINGERPRINTS) -> None:
        self.cfg, self.host, self.platform, self.pm, self._fetch = cfg, host, platform, pm, fetch
        self._pins = pins
        self._all = False  # this run fetched the whole index
        self._scoped: set[str] = set()  # packages whose sources' index this run fetched
        self._trusted: set[str] = set()  # packages a fresh index (install's, < 1 h) offers
        self.refreshes: list[IndexRefresh] = []

    @property
    def refreshed_now(self) -> bool:
        """This run fetched the index, or part of it (the journal records when)."""
        return self._all or bool(self._scoped)

    def pinned_to(self, package: str, version: str) -> PackageSource:
        """This source with `package` pinned to `version` (an undo puts an old version back)."""
        cfg = pins.with_pin(self.cfg, package, version)
        return PackageSource(cfg, self.host, self.platform, self.pm, self._fetch, self._pins)

    def describe(self, package: str) -> str:
        pin = pins.pinned(self.cfg, package)
        named = f"{package} {pin}" if pin else package
        if self.cfg.package_source == "aws":
            return f"{named} from {package_url(self.cfg, self.platform, package)} (signed)"
        if self.cfg.package_source == "bundle":
            return f"{named} from bundle {self.cfg.bundle_dir} (sha256 manifest)"
        if pin:
            return (f"{named} from the host's configured repositories "
                    f"({pins.manager_spec(self.pm.kind, package, pin)})")
        return f"{package} from the host's configured repositories"

    def describe_all(self, packages: Sequence[str]) -> str:
        """`describe` for packages installed together (one transaction)."""
        if (len(packages) == 1 or self.cfg.package_source == "aws"
                or any(pins.pinned(self.cfg, p) for p in packages)):
            return "; ".join(self.describe(p) for p in packages)
        return self.describe(", ".join(packages))

    def refresh(self, packages: Sequence[str] = ()) -> None:
        """Fetch the index that offers `packages`, at most once per run for each: on apt,
        only the source files whose index (as last fetched) offers one of them; all of it
        when none does yet (a repository just added), when no packages are named, or when
        the scoped fetch fails."""
        wanted = [p for p in packages if p not in self._scoped and p not in self._trusted]
        if self._all or (packages and not wanted):
            return
        self._fetch_index(wanted)

    def index_is_current(self, packages: Sequence[str]) -> None:
        """The caller found the index fresh and offering `packages`: this run fetches it for
        them only if installing them fails."""
        self._trusted.update(packages)

    def take_refreshes(self) -> list[IndexRefresh]:
        """The index fetches made since the last call (for the run's notes and report)."""
        done, self.refreshes = self.refreshes, []
        return done

    def _fetch_index(self, packages: Sequence[str]) -> None:
        files, new = self._offering(packages), False
        if not files and self.pm.kind == "apt" and packages:
            # A repository added since the last fetch (the agents' own, on a fresh host):
            # fetch the sources never fetched before, unless that does not bring them.
            files = aptsources.files_never_fetched(self.host, self.pm.fetched_repositories())
            if len(files) == len(aptsources.source_files(self.host)):
                files = []  # all of them: one full update does it
            new = True
        if not files:
            self._fetch_all(packages, "no configured source offers them yet" if packages else "")
            return
        try:
            for path in files:
                self.pm.refresh(path)
        except PackageError as err:
            self._fetch_all(packages, f"fetching only {', '.join(files)} failed: {err.message}")
            return
        if new and not all(self.pm.origins(packages).values()):
            self._fetch_all(packages, f"no configured source offers them yet (nor "
                                      f"{', '.join(files)}, fetched for the first time)")
            return
        self._scoped.update(packages)
        self.refreshes.append(IndexRefresh(tuple(packages), tuple(files),
                                           "no source fetched before offers them" if new else ""))

    def _offering(self, packages: Sequence[str]) -> list[str]:
        if self.pm.kind != "apt" or not packages:
            return []
        origins: set[tuple[str, str]] = set().union(*self.pm.origins(packages).values())
        return aptsources.files_offering(self.host, origins) if origins else []

    def _fetch_all(self, packages: Sequence[str], reason: str) -> None:
        self.pm.refresh()
        self._all = True
        if self.pm.kind == "apt":
            self.refreshes.append(IndexRefresh(tuple(packages), (), reason))

    def _widen(self, packages: Sequence[str]) -> bool:
        """After installing `packages` failed: fetch more of the index than this run has
        (a fresh index trusted -> their sources -> all of it); False when it has all."""
        if self._all:
            return False
        if any(p in self._scoped for p in packages):
            self._fetch_all(packages, "installing them failed after fetching only their sources")
        else:
            self._trusted.difference_update(packages)
            self._fetch_index(packages)
        return True

    def install_from_repos(self, packages: Sequence[str], specs: Sequence[str] = (), *,
                           downgrade: bool = False) -> None:
        """Install `packages` (as `specs`: pinned ones) from the host's repositories, after
        fetching the index that offers them. When that fails because the index was older
        than it looked (a version gone from the mirror, a dependency from a source this run
        did not fetch), fetch more and try again: at most twice, each time a wider fetch."""
        self.refresh(packages)
        while True:
            try:
                self.pm.install(list(specs or packages), downgrade=downgrade)
                return
            except PackageError:
                if not self._widen(packages):
                    raise

    def install(self, package: str, *, downgrade: bool = False) -> None:
        """Put `package` in place, at its pinned version when one is configured; `downgrade`
        when that version is older than the installed one (a rollback)."""
        self.install_all([package], downgrade=downgrade)

    def install_all(self, packages: Sequence[str], *, downgrade: bool = False) -> None:
        """Install `packages` in one transaction of the host's package manager, each at its
        pinned version when one is configured."""
        source = self.cfg.package_source
        if source == "repo":
            self.install_from_repos(packages, [pins.manager_spec(self.pm.kind, p,
                                                                 pins.pinned(self.cfg, p))
                                               for p in packages], downgrade=downgrade)
        elif source == "bundle":
            self.pm.install_files([self._from_bundle(p) for p in packages], downgrade=downgrade)
        else:
            self.pm.install_files([self.download_verified(p) for p in packages],
                                  downgrade=downgrade)

    # -- aws ----------------------------------------------------------------------------------
    def download_verified(self, package: str) -> str:
        """Fetch `package` from AWS's layout (or the mirror), gpg-verified; its local path."""
        url = package_url(self.cfg, self.platform, package)
        proxies = {k: v for k, v in (("http", self.cfg.proxy.http),
                                     ("https", self.cfg.proxy.https)) if v}
        sig_url = url + SIGNATURE_SUFFIX[package]
        pkg = self._fetch(url, proxies)
        sig = self._fetch(sig_url, proxies)
        for d in (pkg, sig):
            if d.status != 200:
                raise PackageError(f"download of {d.url} returned HTTP {d.status}",
                                   "check region/package_base_url, or use package_source = repo")
        cache = agent_files.PACKAGE_CACHE
        name = url.rsplit("/", 1)[1]
        self.host.write_atomic(f"{cache}/{name}", pkg.body, 0o644)
        sig_name = name + SIGNATURE_SUFFIX[package]
        self.host.write_atomic(f"{cache}/{sig_name}", sig.body, 0o644)
        self._verify_signature(package, f"{cache}/{name}", f"{cache}/{sig_name}", proxies)
        return str(self.host.path(f"{cache}/{name}"))

    def fetch(self, url: str) -> bytes:
        """GET an unsigned file of AWS's layout (ECS Exec's binaries tarball, which AWS
        publishes without a signature) through the configured proxy; non-200 names the fix."""
        proxies = {k: v for k, v in (("http", self.cfg.proxy.http),
                                     ("https", self.cfg.proxy.https)) if v}
        got = self._fetch(url, proxies)
        if got.status != 200:
            raise PackageError(f"download of {url} returned HTTP {got.status}",
                               "check region/package_base_url, or use package_source = repo "
                               "or bundle")
        return got.body

    def trusted_keys(self, package: str, proxies: dict[str, str]) -> tuple[list[bytes], bool]:
        """Key material and whether it is pinned by fingerprint (AWS's) or by configuration.

        Keys named by the operator (package_signing_key, /etc/anywhere-agent/keys) are trusted
        as given; AWS's key, fetched like the official script does, must match a pinned
        fingerprint.
        """
        explicit = [self.host.read_bytes(f"{KEYS_DIR}/{n}") or b""
                    for n in self.host.listdir(KEYS_DIR) if n.endswith((".asc", ".gpg"))]
        if self.cfg.package_signing_key:
            data = self.host.read_bytes(self.cfg.package_signing_key)
            if data is None:
                raise ConfigError(f"package_signing_key {self.cfg.package_signing_key} not found",
                                  "point package_signing_key at an ASCII-armoured public key")
            explicit.append(data)
        if explicit:
            return [k for k in explicit if k], False
        key = self._fetch(KEY_URLS[package], proxies)
        if key.status != 200:
            raise PackageError(f"cannot fetch AWS's signing key for {package} "
                               f"(HTTP {key.status})",
                               f"put the key in {KEYS_DIR}/ or set package_signing_key")
        return [key.body], True

    def _verify_signature(self, package: str, node_file: str, node_sig: str,
                          proxies: dict[str, str]) -> None:
        """gpg --verify against trusted keys only; anything but a valid signature fails closed."""
        keys, pinned = self.trusted_keys(package, proxies)
        with tempfile.TemporaryDirectory(prefix="aa-gpg.") as home:
            keyring = Path(home) / "keys.asc"
            keyring.write_bytes(b"\n".join(keys))
            imp = self.host.run(["gpg", "--batch", "--homedir", home, "--import", str(keyring)],
                                timeout=60)
            if imp.returncode == 127:
                raise PackageError("gpg is not installed, so signatures cannot be checked",
                                   "install gnupg (apt-get install gpg / dnf install gnupg2)")
            res = self.host.run(
                ["gpg", "--batch", "--homedir", home, "--status-fd", "1", "--verify",
                 str(self.host.path(node_sig)), str(self.host.path(node_file))], timeout=60)
        primaries = {line.split()[-1].upper() for line in res.stdout.splitlines()
                     if line.startswith("[GNUPG:] VALIDSIG")}
        if not primaries:
            self.host.remove(node_file)
            raise PackageError(f"signature check failed for {Path(node_file).name}",
                               "the download may be tampered with; check the mirror/proxy")
        trusted = self.pinned(package)
        if pinned and not primaries & trusted:
            # A valid signature by a key we do not pin: AWS's next key after a rotation, or a
            # key substituted in transit. Say which, and how to trust it once verified.
            self.host.remove(node_file)
            seen = ", ".join(sorted(primaries))
            raise PackageError(
                f"{Path(node_file).name} is signed by key {seen}, which is not pinned "
                f"(pinned: {', '.join(sorted(trusted))})",
                f"if AWS rotated its {package} key, verify {seen} against AWS's documentation, "
                f"then add it to package_signing_fingerprints in agent.toml")

    def pinned(self, package: str) -> frozenset[str]:
        """Built-in pins for `package` plus the operator's package_signing_fingerprints."""
        extra = {f.strip().replace(" ", "").upper()
                 for f in self.cfg.package_signing_fingerprints.split(",") if f.strip()}
        return self._pins.get(package, frozenset()) | extra

    # -- bundle -------------------------------------------------------------------------------
    def bundle_manifest(self) -> dict[str, str]:
        """relative path -> sha256 from `<bundle_dir>/manifest.sha256` (sha256sum format)."""
        text = self.host.read_text(f"{self.cfg.bundle_dir}/{BUNDLE_MANIFEST}")
        if text is None:
            raise PackageError(f"bundle {self.cfg.bundle_dir} has no {BUNDLE_MANIFEST}",
                               "build it with `anywhere-agent bundle` and copy it whole")
        manifest: dict[str, str] = {}
        for line in text.splitlines():
            parts = line.split(None, 1)
            if len(parts) == 2:
                manifest[parts[1].lstrip("*").strip()] = parts[0].lower()
        return manifest

    def _from_bundle(self, package: str) -> str:
        manifest = self.bundle_manifest()
        ext = "deb" if self.platform.family == "deb" else "rpm"
        arch_names = {self.platform.arch, _ALT_ARCH[self.platform.arch], "all", "noarch"}
        candidates = sorted(
            (bundle_file_version(package, Path(rel).name), rel) for rel in manifest
            if Path(rel).name.startswith(package) and rel.endswith("." + ext)
            and any(a in Path(rel).name for a in arch_names)
        )
        if not candidates:
            raise PackageError(f"bundle has no {package} .{ext} for {self.platform.arch}",
                               "rebuild the bundle with the right --arch and --distro-family")
        pin = pins.pinned(self.cfg, package)
        if pin:
            carried = ", ".join(v for v, _ in candidates)
            candidates = [(v, rel) for v, rel in candidates if pins.satisfies(v, pin)]
            if not candidates:
                raise PackageError(f"bundle {self.cfg.bundle_dir} has no {package} {pin} "
                                   f"(it carries {carried})",
                                   f"rebuild it with `anywhere-agent bundle "
                                   f"{pins.option(package)} {pin}`, or set "
                                   f"{pins.PIN_KEYS[package]} to a version it carries")
        # The newest by version order, not by name (3.3.10 is newer than 3.3.9).
        rel = max(candidates, key=lambda vr: (pins.version_key(vr[0]), vr[1]))[1]
        node_path = f"{self.cfg.bundle_dir}/{rel}"
        data = self.host.read_bytes(node_path)
        if data is None or hashlib.sha256(data).hexdigest() != manifest[rel]:
            raise PackageError(f"bundle file {rel} does not match its checksum",
                               "copy the bundle again from a trusted build")
        return str(self.host.path(node_path))


def bundle_file_version(package: str, name: str) -> str:
    """The version in a bundle file's name (`<package>_<version>_<arch>.deb`,
    `<package>-<version>.<arch>.rpm`, as `anywhere-agent bundle` names them)."""
    rest = name[len(package) + 1:]
    if name.endswith(".deb"):
        return rest.split("_", 1)[0]
    return rest.rsplit(".", 2)[0]
