"""The host's apt sources: which source list file (one-line `.list` or deb822 `.sources`) names
which repository, so a refresh can fetch the index of only the file(s) that offer a package."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from anywhere_agent.host.gateway import Host
from anywhere_agent.host.platform import parse_os_release, read_os_release

SOURCES_LIST = "/etc/apt/sources.list"
SOURCES_PARTS = "/etc/apt/sources.list.d"
# apt reads only these names in sources.list.d (apt-pkg/sourcelist.cc); others (`.disabled`,
# `.dpkg-old`, editor backups) it skips silently, and so do we.
_PART_NAME = re.compile(r"^[A-Za-z0-9_.-]+\.(list|sources)$")


@dataclass(frozen=True)
class Entry:
    """One `deb` repository a source file names: its URI (as written) and suite."""

    uri: str
    suite: str
    components: tuple[str, ...] = ()


def source_files(host: Host) -> list[str]:
    """The files apt reads its sources from, in apt's order (default Dir::Etc paths)."""
    files = [SOURCES_LIST] if host.exists(SOURCES_LIST) else []
    return files + [f"{SOURCES_PARTS}/{name}" for name in host.listdir(SOURCES_PARTS)
                    if _PART_NAME.match(name)]


def parse(node_path: str, text: str) -> list[Entry]:
    """The `deb` entries of one source file, by its format (deb822 for `.sources`)."""
    return parse_deb822(text) if node_path.endswith(".sources") else parse_one_line(text)


def parse_one_line(text: str) -> list[Entry]:
    """`deb [options] URI SUITE [COMPONENT...]` lines; `deb-src` and comments skipped."""
    found = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split(None, 1)
        if len(words) < 2 or words[0] != "deb":
            continue
        rest = words[1].strip()
        if rest.startswith("["):  # options may hold spaces: `[ arch=amd64 trusted=yes ]`
            rest = rest.partition("]")[2]
        words = rest.split()
        if len(words) >= 2:
            found.append(Entry(words[0], words[1], tuple(words[2:])))
    return found


def parse_deb822(text: str) -> list[Entry]:
    """deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`, `Components:`); each URI and suite
    pair is one entry; `Enabled: no` stanzas are skipped."""
    found = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").strip().lower() == "no":
            continue
        components = tuple(stanza.get("components", "").split())
        for uri in stanza.get("uris", "").split():
            for suite in stanza.get("suites", "").split():
                found.append(Entry(uri, suite, components))
    return found


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    fields: dict[str, str] = {}
    key = ""
    for raw in [*text.splitlines(), ""]:
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if fields:
                yield fields
            fields, key = {}, ""
        elif raw[0].isspace() and key:
            fields[key] += " " + raw.strip()  # a continuation line
        elif ":" in raw:
            key, _, value = raw.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()


def same_repository(uri: str, other: str) -> bool:
    """Whether two URIs name one repository; apt prints them without credentials and
    trailing slash, a source file may carry both."""
    return _plain(uri) == _plain(other)


def _plain(uri: str) -> str:
    scheme, sep, rest = uri.partition("://")
    if sep:
        host, slash, path = rest.partition("/")
        rest = host.rpartition("@")[2] + slash + path
    return (scheme + sep + rest).rstrip("/")


def offers(entry: Entry, uri: str, dist: str) -> bool:
    """Whether `entry` is the repository apt-cache policy names as `uri dist` (`dist` is
    `SUITE/COMPONENT` for a dists/ repository, the suite itself for a flat one)."""
    if not same_repository(entry.uri, uri):
        return False
    if dist == entry.suite:
        return True
    suite, _, component = dist.rpartition("/")
    return suite == entry.suite.rstrip("/") and component in entry.components


def files_offering(host: Host, origins: Iterable[tuple[str, str]]) -> list[str]:
    """The source files (in apt's order) that name any of `origins` ((uri, dist) pairs as
    apt-cache policy prints them)."""
    wanted = list(origins)
    return [path for path, entries in entries_by_file(host).items()
            if any(offers(e, uri, dist) for e in entries for uri, dist in wanted)]


def files_never_fetched(host: Host, fetched: Iterable[tuple[str, str]]) -> list[str]:
    """The source files (in apt's order) naming a repository whose index apt has no copy of
    (`fetched`: (uri, suite) pairs as `apt-get indextargets` lists them), other than the
    distribution's own archive (suites named after the release: bookworm, bookworm-updates),
    which a host needs anyway and which is the largest index by far."""
    have = list(fetched)
    codename = release_codename(host)

    def new(entry: Entry) -> bool:
        if codename and entry.suite.split("-")[0] == codename:
            return False
        return not any(same_repository(entry.uri, uri) and entry.suite == suite
                       for uri, suite in have)

    return [path for path, entries in entries_by_file(host).items() if any(map(new, entries))]


def release_codename(host: Host) -> str:
    """VERSION_CODENAME from os-release (bookworm, jammy), or "" when it names none."""
    return parse_os_release(read_os_release(host) or "").get("VERSION_CODENAME", "")


def entries_by_file(host: Host) -> Mapping[str, list[Entry]]:
    return {path: parse(path, host.read_text(path) or "") for path in source_files(host)}
