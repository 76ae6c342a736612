"""Distro and arch detection is one flat function of os-release text and uname -m."""

from __future__ import annotations

import pytest

from anywhere_agent.errors import ExitCode, PreflightError
from anywhere_agent.host.platform import detect

CASES = [
    ('ID=debian\nVERSION_ID="12"\n', "x86_64", ("deb", "apt", "amd64")),
    ('ID=ubuntu\nID_LIKE=debian\nVERSION_ID="22.04"\n', "aarch64", ("deb", "apt", "arm64")),
    ('ID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.3"\n', "x86_64", ("rpm", "dnf", "amd64")),
    ('ID="centos"\nVERSION_ID="7"\n', "x86_64", ("rpm", "yum", "amd64")),
    ('ID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.9"\n', "x86_64",
     ("rpm", "dnf", "amd64")),
    ('ID="amzn"\nVERSION_ID="2"\n', "aarch64", ("rpm", "yum", "arm64")),
    ('ID="amzn"\nVERSION_ID="2023"\n', "x86_64", ("rpm", "dnf", "amd64")),
    ('ID="sles"\nVERSION_ID="15.5"\n', "x86_64", ("suse", "zypper", "amd64")),
    ('ID="opensuse-leap"\nID_LIKE="suse opensuse"\n', "x86_64", ("suse", "zypper", "amd64")),
    ('ID=linuxmint\nID_LIKE="ubuntu debian"\n', "x86_64", ("deb", "apt", "amd64")),
]


@pytest.mark.parametrize(("text", "machine", "expected"), CASES)
def test_supported_platforms_map_to_family_manager_and_arch(
        text: str, machine: str, expected: tuple[str, str, str]) -> None:
    p = detect(text, machine)
    assert (p.family, p.package_manager, p.arch) == expected


def test_unsupported_architecture_is_a_preflight_error_with_a_fix() -> None:
    with pytest.raises(PreflightError) as err:
        detect("ID=debian\n", "armv7l")
    assert "armv7l" in str(err.value) and err.value.exit_code == ExitCode.PREFLIGHT


def test_unknown_distribution_names_the_supported_ones() -> None:
    with pytest.raises(PreflightError) as err:
        detect("ID=gentoo\n", "x86_64")
    assert "Debian" in err.value.fix
