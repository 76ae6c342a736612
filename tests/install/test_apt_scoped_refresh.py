"""Install fetches the apt index of only the source file(s) that offer the agents, and falls
back to the full `apt-get update` when none does yet, when that fetch fails, or when installing
after it fails."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from anywhere_agent.errors import PackageError
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.host.packages import PackageManager
from anywhere_agent.install.journal import Journal
from anywhere_agent.install.sources import PackageSource
from tests.conftest import DEBIAN
from tests.install.runs import run

AGENTS = frozenset({"amazon-ssm-agent", "amazon-ecs-init"})
LAB_LIST = "/etc/apt/sources.list.d/anywhere-lab.list"
DEBIAN_SOURCES = "/etc/apt/sources.list.d/debian.sources"
DEBIAN_DEB822 = """\
# Debian, as bookworm's installer writes it
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
"""
SCOPE_OPTIONS = ("Dir::Etc::sourceparts=-", "APT::Get::List-Cleanup=0")


class AptWorld:
    """apt on the scripted node, per source file: which packages each file's repository
    offers ((uri, dist) as apt-cache policy prints it), which files `apt-get update` has
    fetched; every other command goes to the node's own runner."""

    def __init__(self, system: Any, offers: Mapping[str, tuple[str, str, Any]],
                 fetched: Sequence[str] = ()) -> None:
        self.system, self.offers = system, dict(offers)
        self.fetched = set(fetched)
        self.fail_scoped = False
        self.failing_installs = 0  # how many of the next `apt-get install` calls fail

    def __call__(self, argv: Sequence[str], *, input: bytes | None = None,
                 env: Mapping[str, str] | None = None, timeout: float | None = None) -> Result:
        argv = tuple(argv)
        if argv[:2] == ("apt-get", "update"):
            self.system.calls.append(argv)
            lists = [a.split("=", 1)[1] for a in argv if a.startswith("Dir::Etc::sourcelist=")]
            if not lists:
                self.fetched |= set(self.offers)
                return Result(argv, 0)
            if self.fail_scoped:
                return Result(argv, 100, "", "E: Failed to fetch "
                                             "http://deploy:Hunter2@repo/apt/InRelease  503")
            self.fetched.add("/" + str(Path(lists[0]).relative_to(self.system.root)))
            return Result(argv, 0)
        if argv[:2] == ("apt-get", "indextargets"):
            self.system.calls.append(argv)
            return Result(argv, 0, "".join(
                f"{uri}/ {dist.split('/')[0] if not dist.endswith('/') else dist}\n"
                for path, (uri, dist, _) in self.offers.items() if path in self.fetched))
        if argv[:2] == ("apt-cache", "policy"):
            self.system.calls.append(argv)
            return Result(argv, 0, "".join(self._policy(name) for name in argv[2:]))
        if argv[:2] == ("apt-get", "install") and self.failing_installs:
            self.system.calls.append(argv)
            self.failing_installs -= 1
            return Result(argv, 100, "", "E: Unable to correct problems, you have held "
                                         "broken packages.")
        return self.system(argv, input=input, env=env, timeout=timeout)

    def _policy(self, name: str) -> str:
        origins = [(uri, dist) for path, (uri, dist, names) in self.offers.items()
                   if path in self.fetched and name in names]
        text = f"{name}:\n  Installed: (none)\n  Candidate: {'1.0' if origins else '(none)'}\n"
        if origins:
            text += "  Version table:\n     1.0 500\n"
            for uri, dist in origins:
                arch = "" if dist.endswith("/") else " amd64"
                text += f"        500 {uri} {dist}{arch} Packages\n"
        return text


def write(system: Any, node_path: str, text: str) -> None:
    path = system.root / node_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def lab_host(system: Any, **kw: Any) -> AptWorld:
    """The lab's sources: the agents' flat repo in anywhere-lab.list, Debian in deb822."""
    write(system, "/etc/os-release", DEBIAN + "VERSION_CODENAME=bookworm\n")
    write(system, LAB_LIST, "deb [trusted=yes] http://10.213.7.1:8080/apt ./\n")
    write(system, DEBIAN_SOURCES, DEBIAN_DEB822)
    offers = {LAB_LIST: ("http://10.213.7.1:8080/apt", "./", set(AGENTS)),
              DEBIAN_SOURCES: ("http://deb.debian.org/debian", "bookworm/main", {"docker.io"})}
    return AptWorld(system, offers, kw.pop("fetched", list(offers)), **kw)


def on(node: Any, world: AptWorld, **flags: Any) -> Any:
    """An install context on the node whose commands go through `world`."""
    _, make_ctx, _ = node
    ctx = make_ctx(**flags)
    host = Host(ctx.host.root, runner=world)
    ctx.host, ctx.journal = host, Journal(host)
    ctx.source = PackageSource(ctx.cfg, host, ctx.platform, PackageManager(host, "apt"))
    return ctx


def updates(system: Any) -> list[tuple[str, ...]]:
    return [c for c in system.calls if c[:2] == ("apt-get", "update")]


def scoped_to(call: tuple[str, ...]) -> str | None:
    lists = [a.split("=", 1)[1] for a in call if a.startswith("Dir::Etc::sourcelist=")]
    return lists[0] if lists else None


def installs(system: Any) -> list[tuple[str, ...]]:
    return [c for c in system.calls if c[:2] == ("apt-get", "install")]


def test_install_refreshes_only_the_list_file_that_offers_the_agents(node: Any) -> None:
    system = node[0]
    outcome = run(on(node, lab_host(system)))
    [update] = updates(system)
    assert scoped_to(update) == str(system.root / LAB_LIST.lstrip("/"))
    assert all(option in update for option in SCOPE_OPTIONS)
    assert AGENTS <= set(installs(system)[0])
    assert (f"refreshed the index of {LAB_LIST} only (offering amazon-ssm-agent, "
            "amazon-ecs-init)") in outcome.notes
    assert outcome.report["package_index"] == [{
        "scope": "sources", "source_files": [LAB_LIST],
        "packages": ["amazon-ssm-agent", "amazon-ecs-init"], "reason": ""}]
    assert outcome.report["cloud_verified"] is True


def test_a_repository_in_sources_list_itself_is_refreshed_from_that_file_without_its_password(
        node: Any) -> None:
    system = node[0]
    write(system, "/etc/apt/sources.list",
          "# the agents from the company mirror\n"
          "deb [ arch=amd64 signed-by=/etc/apt/keyrings/corp.gpg ] "
          "https://deploy:Hunter2@repo.corp.example/ecs/ stable main\n"
          "deb-src https://repo.corp.example/ecs/ stable main\n")
    write(system, DEBIAN_SOURCES, DEBIAN_DEB822)
    # apt prints a repository without its credentials and trailing slash.
    world = AptWorld(system, {
        "/etc/apt/sources.list": ("https://repo.corp.example/ecs", "stable/main", AGENTS),
        DEBIAN_SOURCES: ("http://deb.debian.org/debian", "bookworm/main", {"docker.io"})},
        ["/etc/apt/sources.list", DEBIAN_SOURCES])
    outcome = run(on(node, world))
    [update] = updates(system)
    assert scoped_to(update) == str(system.root / "etc/apt/sources.list")
    assert outcome.report["package_index"][0]["source_files"] == ["/etc/apt/sources.list"]
    assert "Hunter2" not in repr(outcome.to_dict())


def test_agents_offered_by_a_deb822_sources_file_are_refreshed_from_that_file(node: Any) -> None:
    system = node[0]
    write(system, "/etc/apt/sources.list.d/ecs.sources",
          "Types: deb\nURIs: http://mirror.example/old\nSuites: stable\nComponents: main\n"
          "Enabled: no\n\n"
          "Types: deb\nURIs: http://mirror.example/ecs\n  http://mirror2.example/ecs\n"
          "Suites: stable\nComponents: main extra\n")
    write(system, DEBIAN_SOURCES, DEBIAN_DEB822)
    world = AptWorld(system, {
        "/etc/apt/sources.list.d/ecs.sources": ("http://mirror2.example/ecs", "stable/extra",
                                                AGENTS),
        DEBIAN_SOURCES: ("http://deb.debian.org/debian", "bookworm/main", {"docker.io"})},
        ["/etc/apt/sources.list.d/ecs.sources", DEBIAN_SOURCES])
    run(on(node, world))
    [update] = updates(system)
    assert scoped_to(update) == str(system.root / "etc/apt/sources.list.d/ecs.sources")


def test_a_repository_added_since_the_last_update_is_fetched_alone(node: Any) -> None:
    system = node[0]
    world = lab_host(system, fetched=[DEBIAN_SOURCES])  # the agents' repo was just added
    outcome = run(on(node, world))
    [update] = updates(system)
    assert scoped_to(update) == str(system.root / LAB_LIST.lstrip("/"))
    assert outcome.report["package_index"] == [{
        "scope": "sources", "source_files": [LAB_LIST],
        "packages": ["amazon-ssm-agent", "amazon-ecs-init"],
        "reason": "no source fetched before offers them"}]


def test_a_host_never_updated_fetches_all_but_the_distributions_archive_first(
        node: Any) -> None:
    system = node[0]
    outcome = run(on(node, lab_host(system, fetched=[])))
    assert [scoped_to(c) for c in updates(system)] == [str(system.root / LAB_LIST.lstrip("/"))]
    assert outcome.report["package_index"][0]["source_files"] == [LAB_LIST]


def test_new_sources_that_do_not_offer_the_agents_lead_to_the_full_update(node: Any) -> None:
    system = node[0]
    world = lab_host(system, fetched=[])
    world.offers[DEBIAN_SOURCES][2].update(AGENTS)  # the agents come from the archive itself
    world.offers[LAB_LIST][2].clear()
    outcome = run(on(node, world))
    assert [scoped_to(c) for c in updates(system)] == [str(system.root / LAB_LIST.lstrip("/")),
                                                       None]
    assert ("refreshed the whole package index for amazon-ssm-agent, amazon-ecs-init: no "
            f"configured source offers them yet (nor {LAB_LIST}, fetched for the first time)"
            ) in outcome.notes
    assert system.packages.keys() >= AGENTS


def test_a_host_whose_every_source_is_new_gets_one_full_update(node: Any) -> None:
    system = node[0]
    world = lab_host(system, fetched=[])
    write(system, "/etc/os-release", DEBIAN)  # no VERSION_CODENAME: the archive is not known
    outcome = run(on(node, world))
    assert [scoped_to(c) for c in updates(system)] == [None]
    assert outcome.report["package_index"][0]["reason"] == "no configured source offers them yet"


def test_a_failed_scoped_update_falls_back_to_the_full_one(node: Any) -> None:
    system = node[0]
    world = lab_host(system)
    world.fail_scoped = True
    outcome = run(on(node, world))
    assert [scoped_to(c) for c in updates(system)] == [str(system.root / LAB_LIST.lstrip("/")),
                                                       None]
    assert len(installs(system)) == 1
    [done] = outcome.report["package_index"]
    assert done["scope"] == "all" and "503" in done["reason"]
    assert "Hunter2" not in repr(outcome.to_dict()) and "deploy:***@repo" in done["reason"]


def test_an_install_failing_after_the_scoped_update_runs_the_full_one_and_installs_again(
        node: Any) -> None:
    system = node[0]
    world = lab_host(system)
    world.failing_installs = 1  # a dependency the stale Debian index names wrongly
    outcome = run(on(node, world))
    assert [scoped_to(c) for c in updates(system)] == [str(system.root / LAB_LIST.lstrip("/")),
                                                       None]
    assert len(installs(system)) == 2
    assert [d["scope"] for d in outcome.report["package_index"]] == ["sources", "all"]
    assert outcome.report["package_index"][1]["reason"] == \
        "installing them failed after fetching only their sources"
    assert system.packages.keys() >= AGENTS


def test_an_install_that_fails_after_the_full_update_too_stops_with_the_package_error(
        node: Any) -> None:
    system = node[0]
    world = lab_host(system)
    world.failing_installs = 5
    with pytest.raises(PackageError, match="held broken packages"):
        run(on(node, world))
    assert [scoped_to(c) is None for c in updates(system)] == [False, True]
    assert len(installs(system)) == 2
    assert not system.packages.keys() & AGENTS


def test_docker_after_the_agents_refreshes_only_debians_sources_file(node: Any) -> None:
    system = node[0]
    outcome = run(on(node, lab_host(system), docker_source="distro"))
    assert [scoped_to(c) for c in updates(system)] == [
        str(system.root / LAB_LIST.lstrip("/")), str(system.root / DEBIAN_SOURCES.lstrip("/"))]
    assert f"refreshed the index of {DEBIAN_SOURCES} only (offering docker.io)" in outcome.notes
    assert "docker.io" in system.packages


def test_a_rerun_within_the_hour_that_fails_to_install_fetches_the_agents_source_first(
        node: Any) -> None:
    system = node[0]
    world = lab_host(system)
    run(on(node, world))
    for name in AGENTS:
        del system.packages[name]
    system.calls.clear()
    world.failing_installs = 1  # the version the index names is gone from the mirror
    outcome = run(on(node, world, with_code=False))
    # The index install fetched < 1 h ago is trusted; when that fails, the agents' source is
    # fetched (not the whole index) and the install tried again.
    assert any(n.startswith("no package index refresh") for n in outcome.notes)
    assert [scoped_to(c) for c in updates(system)] == [str(system.root / LAB_LIST.lstrip("/"))]
    assert len(installs(system)) == 2
    assert system.packages.keys() >= AGENTS
