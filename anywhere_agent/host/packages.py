"""Packages on a node: the installed version of one, and the distribution's package manager
(apt, dnf, yum, zypper) to install, query and remove them, all through the host gateway."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from anywhere_agent.errors import PackageError
from anywhere_agent.host.gateway import Host
from anywhere_agent.secret import redact_userinfo

# A run killed inside apt leaves an orphaned apt/dpkg finishing its work and holding the lock:
# the next run waits for it (bounded) instead of failing at once.
_APT_LOCK_WAIT = ("-o", "DPkg::Lock::Timeout=120")


def package_version(host: Host, name: str, kind: str | None = None) -> str | None:
    """The installed version of a package (None when not installed): dpkg-query on apt
    hosts, rpm on the others; both in turn when the package manager is not known."""
    if kind in (None, "apt"):
        res = host.run(["dpkg-query", "-W", "-f=${db:Status-Status} ${Version}", name],
                       timeout=60)
        status, _, version = res.stdout.partition(" ")
        if res.ok and status == "installed" and version.strip():
            return version.strip()
        if kind == "apt":
            return None
    res = host.run(["rpm", "-q", "--qf", "%{VERSION}-%{RELEASE}", name], timeout=60)
    return res.stdout.strip() if res.ok and res.stdout.strip() else None


class PackageManager:
    """Install/query/remove packages with the distro's tool; chosen by `host.platform`."""

    def __init__(self, host: Host, kind: str, env: Mapping[str, str] | None = None) -> None:
        if kind not in ("apt", "dnf", "yum", "zypper"):
            raise PackageError(f"unsupported package manager {kind!r}",
                               "use a Debian, Ubuntu, RHEL-family, Amazon Linux or SUSE host")
        self.kind = kind
        self._host = host
        self._env = dict(env or {})  # proxy variables, DEBIAN_FRONTEND

    def installed_version(self, name: str) -> str | None:
        return package_version(self._host, name, self.kind)

    def candidates(self, names: Sequence[str]) -> dict[str, str | None]:
        """The version the repositories' index would install for each name, or None (apt
        only: elsewhere always None). Reads the local index only; fetches nothing."""
        return {name: found[0] for name, found in self._policy(names).items()}

    def origins(self, names: Sequence[str]) -> dict[str, set[tuple[str, str]]]:
        """The repositories whose index, as last fetched, offers each name: (uri, dist) as
        `apt-cache policy` prints them (apt only; empty elsewhere). Fetches nothing."""
        return {name: found[1] for name, found in self._policy(names).items()}

    def fetched_repositories(self) -> set[tuple[str, str]]:
        """(uri, suite) of every repository whose index apt holds a copy of (apt only)."""
        if self.kind != "apt":
            return set()
        res = self._host.run(["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"],
                             timeout=60)
        return {(words[0], words[1]) for words in map(str.split, res.stdout.splitlines())
                if len(words) == 2} if res.ok else set()

    def _policy(self, names: Sequence[str]) -> dict[str, tuple[str | None, set[tuple[str, str]]]]:
        found: dict[str, tuple[str | None, set[tuple[str, str]]]] = {
            name: (None, set()) for name in names}
        if self.kind != "apt" or not names:
            return found
        res = self._host.run(["apt-cache", "policy", *names], timeout=60)
        current = ""
        for line in res.stdout.splitlines() if res.ok else []:
            words = line.split()
            if line and not line[0].isspace() and line.rstrip().endswith(":"):
                current = line.strip()[:-1]
            elif current not in found:
                continue
            elif line.strip().startswith("Candidate:"):
                version = line.split(":", 1)[1].strip()
                found[current] = (None if version == "(none)" else version, found[current][1])
            elif len(words) >= 4 and words[-1] == "Packages" and words[0].lstrip("-").isdigit():
                # A version table's origin: `500 http://host/debian bookworm/main amd64
                # Packages`, or `500 http://host/apt ./ Packages` for a flat repository.
                found[current][1].add((words[1], words[2]))
        return found

    def providers(self, capability: str, *, available: bool = False) -> list[str]:
        """Packages providing `capability`: installed ones, or (available=True) the ones the
        repositories offer (dnf only; [] elsewhere). Reads only."""
        if self.kind == "apt":
            return []
        if available:
            if self.kind != "dnf":
                return []
            res = self._host.run(["dnf", "repoquery", "-q", "--whatprovides", capability,
                                  "--qf", "%{name}"], env=self._env, timeout=300)
        else:
            res = self._host.run(["rpm", "-q", "--whatprovides", capability,
                                  "--qf", "%{NAME}\n"], timeout=60)
        if not res.ok:
            return []
        return list(dict.fromkeys(n.strip() for n in res.stdout.splitlines() if n.strip()))

    def files(self, package: str, *, available: bool = False) -> list[str]:
        """Paths a package installs (rpm family): installed, or from the repositories."""
        if self.kind == "apt" or (available and self.kind != "dnf"):
            return []
        argv = ["dnf", "repoquery", "-q", "-l", package] if available else ["rpm", "-ql", package]
        res = self._host.run(argv, env=self._env if available else None, timeout=300)
        return [ln.strip() for ln in res.stdout.splitlines() if ln.strip()] if res.ok else []

    def _install_argv(self, what: Sequence[str], downgrade: bool = False) -> list[str]:
        # downgrade: a pinned version may be older than the installed one (a rollback).
        if self.kind == "apt":
            return ["apt-get", "install", "-y", "-q", "--no-install-recommends", *_APT_LOCK_WAIT,
                    "-o", "Dpkg::Options::=--force-confold",
                    *(["--allow-downgrades"] if downgrade else []), *what]
        if self.kind == "zypper":
            return ["zypper", "--non-interactive", "install", "--allow-unsigned-rpm",
                    *(["--oldpackage"] if downgrade else []), *what]
        if downgrade:
            # install refuses a version older than the installed one (yum always; dnf for a
            # local file); `downgrade` takes the same NEVRA or file.
            return [self.kind, "downgrade", "-y", *what]
        return [self.kind, "install", "-y", *what]

    def _run(self, argv: list[str], doing: str) -> None:
        env = {"DEBIAN_FRONTEND": "noninteractive", **self._env}
        res = self._host.run(argv, env=env, timeout=900)
        if not res.ok:
            # apt may name a repository with its credentials (https://user:pass@mirror/...).
            raise PackageError(f"{doing} failed: {redact_userinfo(res.last_line())}",
                               "check the package source and proxy (anywhere-agent preflight)")

    def refresh(self, source_file: str | None = None) -> None:
        """Fetch the repositories' index (apt only): all of it, or only the repositories
        `source_file` (a sources.list or sources.list.d file) names, keeping the other
        sources' lists as they are."""
        if self.kind != "apt":
            return
        if source_file is None:
            self._run(["apt-get", "update", "-q", *_APT_LOCK_WAIT], "apt-get update")
            return
        # sourceparts=- reads no sources.list.d; List-Cleanup=0 keeps the lists of the
        # sources this run does not name (apt-get deletes them otherwise).
        self._run(["apt-get", "update", "-q", *_APT_LOCK_WAIT,
                   "-o", f"Dir::Etc::sourcelist={self._host.path(source_file)}",
                   "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"],
                  f"apt-get update of {source_file}")

    def install(self, names: Sequence[str], *, downgrade: bool = False) -> None:
        self._run(self._install_argv(names, downgrade), f"installing {', '.join(names)}")

    def install_files(self, paths: Sequence[str], *, downgrade: bool = False) -> None:
        """Install local package files (apt resolves their dependencies from the repos)."""
        what = [p if p.startswith("/") else "./" + p for p in paths]
        self._run(self._install_argv(what, downgrade),
                  f"installing {', '.join(Path(p).name for p in paths)}")

    def remove(self, names: Sequence[str]) -> None:
        if self.kind == "apt":
            argv = ["apt-get", "remove", "-y", "-q", *_APT_LOCK_WAIT, *names]
        elif self.kind == "zypper":
            argv = ["zypper", "--non-interactive", "remove", *names]
        else:
            argv = [self.kind, "remove", "-y", *names]
        self._run(argv, f"removing {', '.join(names)}")
