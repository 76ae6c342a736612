"""Reading the host's apt sources: one-line `.list` and deb822 `.sources` files, and matching
the repositories apt-cache policy names to the file that configures them."""

from __future__ import annotations

from pathlib import Path

from anywhere_agent.host import aptsources
from anywhere_agent.host.aptsources import Entry
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.packages import PackageManager


def test_one_line_entries_keep_uri_suite_and_components_and_skip_the_rest() -> None:
    text = ("# deb http://commented.example/debian bookworm main\n"
            "deb [ arch=amd64 signed-by=/etc/apt/keyrings/x.gpg ] http://a.example/debian "
            "bookworm main contrib # trailing comment\n"
            "deb-src http://a.example/debian bookworm main\n"
            "deb\t[trusted=yes]\thttp://10.0.0.1:8080/apt\t./\n"
            "debian http://not-a-type.example/ x\n"
            "deb http://broken.example/\n")
    assert aptsources.parse_one_line(text) == [
        Entry("http://a.example/debian", "bookworm", ("main", "contrib")),
        Entry("http://10.0.0.1:8080/apt", "./"),
    ]


def test_deb822_stanzas_give_every_uri_and_suite_and_skip_disabled_and_source_only() -> None:
    text = ("# comment before\n"
            "Types: deb deb-src\nURIs: http://a.example/debian\n  http://b.example/debian\n"
            "Suites: bookworm bookworm-updates\nComponents: main\n"
            "# comment inside\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
            "\n\n"
            "Types: deb\nURIs: http://off.example/\nSuites: x\nEnabled: no\n\n"
            "Types: deb-src\nURIs: http://src.example/\nSuites: x\n\n"
            "types: deb\nuris: http://lower.example/apt\nsuites: ./\n")
    assert aptsources.parse_deb822(text) == [
        Entry("http://a.example/debian", "bookworm", ("main",)),
        Entry("http://a.example/debian", "bookworm-updates", ("main",)),
        Entry("http://b.example/debian", "bookworm", ("main",)),
        Entry("http://b.example/debian", "bookworm-updates", ("main",)),
        Entry("http://lower.example/apt", "./"),
    ]


def test_a_policy_origin_matches_its_entry_without_credentials_or_trailing_slash() -> None:
    dists = Entry("https://user:pa%40ss@repo.example/ecs/", "stable", ("main", "extra"))
    assert aptsources.offers(dists, "https://repo.example/ecs", "stable/extra")
    assert not aptsources.offers(dists, "https://repo.example/ecs", "stable/contrib")
    assert not aptsources.offers(dists, "https://repo.example/ecs", "testing/main")
    assert not aptsources.offers(dists, "https://other.example/ecs", "stable/main")
    flat = Entry("http://10.0.0.1:8080/apt", "./")
    assert aptsources.offers(flat, "http://10.0.0.1:8080/apt", "./")
    assert not aptsources.offers(flat, "http://10.0.0.1:8080/apt2", "./")


def test_files_offering_reads_sources_list_and_only_the_names_apt_reads_in_the_parts(
        tmp_path: Path) -> None:
    parts = tmp_path / "etc/apt/sources.list.d"
    parts.mkdir(parents=True)
    (tmp_path / "etc/apt/sources.list").write_text("deb http://main.example/debian bookworm main\n")
    (parts / "ecs.sources").write_text("Types: deb\nURIs: http://ecs.example/apt\nSuites: ./\n")
    (parts / "ecs.list.disabled").write_text("deb http://ecs.example/apt ./\n")
    (parts / "bad name.list").write_text("deb http://ecs.example/apt ./\n")
    (parts / "mirror.list").write_text("deb http://ecs.example/apt/ ./\n")
    host = Host(tmp_path)
    assert aptsources.source_files(host) == [
        "/etc/apt/sources.list", "/etc/apt/sources.list.d/ecs.sources",
        "/etc/apt/sources.list.d/mirror.list"]
    assert aptsources.files_offering(host, {("http://ecs.example/apt", "./")}) == [
        "/etc/apt/sources.list.d/ecs.sources", "/etc/apt/sources.list.d/mirror.list"]
    assert aptsources.files_offering(host, {("http://main.example/debian", "bookworm/main")}) \
        == ["/etc/apt/sources.list"]
    assert aptsources.files_offering(host, {("http://gone.example/", "./")}) == []


POLICY = """\
amazon-ssm-agent:
  Installed: 3.3.1611.0-1
  Candidate: 3.3.1802.0-1
  Version table:
     3.3.1802.0-1 500
        500 http://127.0.0.1:18080/agents ./ Packages
 *** 3.3.1611.0-1 100
        500 http://127.0.0.1:18080/agents ./ Packages
        100 /var/lib/dpkg/status
docker.io:
  Installed: (none)
  Candidate: 20.10.24+dfsg1-1+deb12u1
  Version table:
     20.10.24+dfsg1-1+deb12u1 -10
        -10 http://deb.debian.org/debian-security bookworm-security/main amd64 Packages
     20.10.24+dfsg1-1+b3 500
        500 http://deb.debian.org/debian bookworm/main amd64 Packages
unknown-package:
  Installed: (none)
  Candidate: (none)
  Version table:
"""


def test_origins_are_the_repositories_in_apt_cache_policys_version_tables(tmp_path: Path) -> None:
    def runner(argv, **kw):  # type: ignore[no-untyped-def]
        return Result(tuple(argv), 0, POLICY)

    pm = PackageManager(Host(tmp_path, runner=runner), "apt")
    names = ["amazon-ssm-agent", "docker.io", "unknown-package"]
    assert pm.origins(names) == {
        "amazon-ssm-agent": {("http://127.0.0.1:18080/agents", "./")},
        "docker.io": {("http://deb.debian.org/debian-security", "bookworm-security/main"),
                      ("http://deb.debian.org/debian", "bookworm/main")},
        "unknown-package": set()}
    assert pm.candidates(names) == {"amazon-ssm-agent": "3.3.1802.0-1",
                                    "docker.io": "20.10.24+dfsg1-1+deb12u1",
                                    "unknown-package": None}


def test_a_scoped_refresh_names_one_source_file_and_keeps_the_other_lists(tmp_path: Path) -> None:
    calls = []

    def runner(argv, **kw):  # type: ignore[no-untyped-def]
        calls.append(tuple(argv))
        return Result(tuple(argv), 0)

    pm = PackageManager(Host("/", runner=runner), "apt")
    pm.refresh("/etc/apt/sources.list.d/anywhere-lab.list")
    pm.refresh()
    assert calls == [
        ("apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120",
         "-o", "Dir::Etc::sourcelist=/etc/apt/sources.list.d/anywhere-lab.list",
         "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"),
        ("apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=120")]


def test_files_never_fetched_leave_out_fetched_repositories_and_the_release_archive(
        tmp_path: Path) -> None:
    parts = tmp_path / "etc/apt/sources.list.d"
    parts.mkdir(parents=True)
    (tmp_path / "etc/os-release").write_text('ID=debian\nVERSION_CODENAME="bookworm"\n')
    (tmp_path / "etc/apt/sources.list").write_text(
        "deb http://deb.debian.org/debian bookworm main\n"
        "deb http://deb.debian.org/debian-security bookworm-security main\n")
    (parts / "agents.list").write_text("deb [trusted=yes] http://10.0.0.1:8080/apt ./\n")
    (parts / "docker.list").write_text("deb https://download.docker.com/linux/debian "
                                       "bookworm stable\n")
    (parts / "tools.list").write_text("deb https://tools.example/apt stable main\n")
    host = Host(tmp_path)
    assert aptsources.release_codename(host) == "bookworm"
    # apt-get indextargets prints the URI with its trailing slash.
    fetched = {("https://tools.example/apt/", "stable")}
    assert aptsources.files_never_fetched(host, fetched) == ["/etc/apt/sources.list.d/agents.list"]
    assert aptsources.files_never_fetched(host, set()) == [
        "/etc/apt/sources.list.d/agents.list", "/etc/apt/sources.list.d/tools.list"]
