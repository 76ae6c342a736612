"""Package sources for the SSM agent and ecs-init: AWS's S3 layout (signed), repos, bundles."""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anywhere_agent.config import Config
from anywhere_agent.errors import ConfigError, NetworkError, PackageError
from anywhere_agent.host.gateway import Host, PackageManager
from anywhere_agent.host.platform import Platform
from anywhere_agent.install import layout

LOG = logging.getLogger(__name__)

# AWS's download layout, as used by the official ecs-anywhere-install.sh. {s} is the S3 host
# suffix (amazonaws.com, or amazonaws.com.cn in cn-* regions).
SSM_URLS = {
    "deb": "https://amazon-ssm-{region}.s3.{region}.{s}/latest/debian_{arch}/amazon-ssm-agent.deb",
    "rpm": "https://amazon-ssm-{region}.s3.{region}.{s}/latest/linux_{arch}/amazon-ssm-agent.rpm",
}
ECS_URLS = {
    "deb": "https://amazon-ecs-agent-{region}.s3.{region}.{s}/amazon-ecs-init-latest.{arch}.deb",
    "rpm": "https://amazon-ecs-agent-{region}.s3.{region}.{s}/amazon-ecs-init-latest.{alt}.rpm",
}
# Where a mirror (package_base_url) keeps the same files: <base>/<relative path below>.
MIRROR_PATHS = {
    ("amazon-ssm-agent", "deb"): "amazon-ssm-agent/latest/debian_{arch}/amazon-ssm-agent.deb",
    ("amazon-ssm-agent", "rpm"): "amazon-ssm-agent/latest/linux_{arch}/amazon-ssm-agent.rpm",
    ("amazon-ecs-init", "deb"): "amazon-ecs-init/amazon-ecs-init-latest.{arch}.deb",
    ("amazon-ecs-init", "rpm"): "amazon-ecs-init/amazon-ecs-init-latest.{alt}.rpm",
}
BUNDLE_MANIFEST = "manifest.sha256"
_ALT_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
# Trusted signing keys shipped with the product (ASCII-armoured), looked up by file name.
KEYS_DIR = Path(__file__).with_name("keys")


def package_url(cfg: Config, platform: Platform, package: str) -> str:
    fmt = "deb" if platform.family == "deb" else "rpm"
    arch, alt = platform.arch, _ALT_ARCH[platform.arch]
    if cfg.package_base_url:
        rel = MIRROR_PATHS[(package, fmt)].format(arch=arch, alt=alt)
        return f"{cfg.package_base_url.rstrip('/')}/{rel}"
    suffix = "amazonaws.com.cn" if cfg.region.startswith("cn-") else "amazonaws.com"
    table = SSM_URLS if package == layout.SSM_PACKAGE else ECS_URLS
    return table[fmt].format(region=cfg.region, s=suffix, arch=arch, alt=alt)


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


class PackageSource:
    """Puts a named package on the host from the configured source."""

    def __init__(self, cfg: Config, host: Host, platform: Platform, pm: PackageManager,
                 fetch: Fetcher = requests_fetcher) -> None:
        self.cfg, self.host, self.platform, self.pm, self._fetch = cfg, host, platform, pm, fetch
        self._refreshed = False

    def describe(self, package: str) -> str:
        if self.cfg.package_source == "aws":
            return f"{package} from {package_url(self.cfg, self.platform, package)} (signed)"
        if self.cfg.package_source == "bundle":
            return f"{package} from bundle {self.cfg.bundle_dir} (sha256 manifest)"
        return f"{package} from the host's configured repositories"

    def install(self, package: str) -> None:
        source = self.cfg.package_source
        if source == "repo":
            if not self._refreshed:
                self.pm.refresh()
                self._refreshed = True
            self.pm.install([package])
        elif source == "bundle":
            self.pm.install_files([self._from_bundle(package)])
        else:
            self.pm.install_files([self._from_aws(package)])

    # -- aws ----------------------------------------------------------------------------------
    def _from_aws(self, package: str) -> str:
        url = package_url(self.cfg, self.platform, package)
        proxies = {k: v for k, v in (("http", self.cfg.proxy.http),
                                     ("https", self.cfg.proxy.https)) if v}
        pkg = self._fetch(url, proxies)
        sig = self._fetch(url + ".asc", proxies)
        for d in (pkg, sig):
            if d.status != 200:
                raise PackageError(f"download of {d.url} returned HTTP {d.status}",
                                   "check region/package_base_url, or use package_source = repo")
        cache = layout.PACKAGE_CACHE
        name = url.rsplit("/", 1)[1]
        self.host.write_atomic(f"{cache}/{name}", pkg.body, 0o644)
        self.host.write_atomic(f"{cache}/{name}.asc", sig.body, 0o644)
        self._verify_signature(f"{cache}/{name}", f"{cache}/{name}.asc")
        return str(self.host.path(f"{cache}/{name}"))

    def trusted_keys(self) -> list[bytes]:
        keys = [p.read_bytes() for p in sorted(KEYS_DIR.glob("*.asc"))]
        if self.cfg.package_signing_key:
            data = self.host.read_bytes(self.cfg.package_signing_key)
            if data is None:
                raise ConfigError(f"package_signing_key {self.cfg.package_signing_key} not found",
                                  "point package_signing_key at an ASCII-armoured public key")
            keys.append(data)
        return keys

    def _verify_signature(self, node_file: str, node_sig: str) -> None:
        """gpg --verify against our trusted keys only; anything but a good signature fails."""
        keys = self.trusted_keys()
        if not keys:
            raise PackageError("no trusted signing key to verify downloaded packages",
                               "set package_signing_key, or use package_source = repo or bundle")
        with tempfile.TemporaryDirectory(prefix="anywhere-agent-gpg.") as home:
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
        if not res.ok or "[GNUPG:] VALIDSIG" not in res.stdout:
            self.host.remove(node_file)
            raise PackageError(f"signature check failed for {Path(node_file).name}",
                               "the download may be tampered with; check the mirror/proxy")

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
            rel for rel in manifest
            if Path(rel).name.startswith(package) and rel.endswith("." + ext)
            and any(a in Path(rel).name for a in arch_names)
        )
        if not candidates:
            raise PackageError(f"bundle has no {package} .{ext} for {self.platform.arch}",
                               "rebuild the bundle with the right --arch and --distro-family")
        rel = candidates[-1]
        node_path = f"{self.cfg.bundle_dir}/{rel}"
        data = self.host.read_bytes(node_path)
        if data is None or hashlib.sha256(data).hexdigest() != manifest[rel]:
            raise PackageError(f"bundle file {rel} does not match its checksum",
                               "copy the bundle again from a trusted build")
        return str(self.host.path(node_path))
