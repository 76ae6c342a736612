"""AWS rotates the key that signs its agent packages: a pinned SET of keys survives that, and a
key outside the set is refused with its fingerprint and the option that trusts it."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.config import load_config
from anywhere_agent.errors import ConfigError, PackageError
from anywhere_agent.host.gateway import Host
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.host.platform import detect
from anywhere_agent.install.sources import KEY_URLS, Download, PackageSource

if not shutil.which("gpg"):
    pytest.skip("needs gpg (make deps)", allow_module_level=True)

DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
PACKAGE = "amazon-ssm-agent"


def gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    return subprocess.run(["gpg", "--batch", "--homedir", str(home), *args], input=data,
                          capture_output=True, check=True, timeout=60).stdout


def new_key(home: Path, name: str) -> str:
    gpg(home, "--passphrase", "", "--quick-gen-key", f"{name} <{name}@example.invalid>",
        "ed25519", "sign", "never")
    out = gpg(home, "--with-colons", "--list-keys", name).decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Today's key and the next one, both in the key file AWS serves, the package signed by
    the next one (the moment right after a rotation)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    old, new = new_key(home, "old"), new_key(home, "next")
    body = b"a package\n"
    sig = gpg(home, "--local-user", new, "--detach-sign", "--output", "-", data=body)
    return {"old": old, "new": new, "body": body, "sig": sig,
            "keyfile": gpg(home, "--armor", "--export", old, new)}


def source(tmp_path: Path, keys: dict[str, Any], pins: dict[str, frozenset[str]],
           **flags: str) -> PackageSource:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    cfg = load_config(root, {}, {"region": "us-east-1", **flags})
    host = Host(root)
    platform = detect(DEBIAN, "x86_64")

    def fetch(url: str, proxies: dict[str, str]) -> Download:
        if url == KEY_URLS[PACKAGE]:
            return Download(url, 200, keys["keyfile"])
        return Download(url, 200, keys["sig"] if url.endswith(".sig") else keys["body"])

    fetcher: Callable[[str, dict[str, str]], Download] = fetch
    return PackageSource(cfg, host, platform, PackageManager(host, "apt"), fetcher, pins=pins)


def test_a_package_signed_by_the_next_key_in_the_pinned_set_installs(
        tmp_path: Path, keys: dict[str, Any]) -> None:
    src = source(tmp_path, keys, {PACKAGE: frozenset({keys["old"], keys["new"]})})
    assert Path(src.download_verified(PACKAGE)).read_bytes() == keys["body"]


def test_a_key_outside_the_pinned_set_is_refused_naming_its_fingerprint_and_the_option(
        tmp_path: Path, keys: dict[str, Any]) -> None:
    src = source(tmp_path, keys, {PACKAGE: frozenset({keys["old"]})})
    with pytest.raises(PackageError) as err:
        src.download_verified(PACKAGE)
    assert keys["new"] in err.value.message and keys["old"] in err.value.message
    assert "package_signing_fingerprints" in err.value.fix
    assert not list((tmp_path / "root").rglob("amazon-ssm-agent.deb"))  # refused file removed


def test_package_signing_fingerprints_trusts_the_rotated_key_without_a_release(
        tmp_path: Path, keys: dict[str, Any]) -> None:
    spaced = " ".join(keys["new"][i:i + 4] for i in range(0, 40, 4))  # as gpg prints it
    src = source(tmp_path, keys, {PACKAGE: frozenset({keys["old"]})},
                 package_signing_fingerprints=spaced)
    assert Path(src.download_verified(PACKAGE)).read_bytes() == keys["body"]


def test_a_malformed_fingerprint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, {}, {"package_signing_fingerprints": "ABCD"})
    assert "40-hex-digit" in err.value.message
