"""A caching Debian package proxy for lab hosts, its upstreams read from this machine's apt config.

Lab hosts have no route out. The package server (pkgserver.py) answers `/debian/<key>/<path>`
from a cache under /var/cache/anywhere-agent-lab/apt, fetching a missing file once from the
upstream repository `<key>` names. The upstreams are whatever this build machine's own apt
uses (`apt-get indextargets`), read when the lab comes up: the repo never names a mirror.

Files under `pool/` and `by-hash/` never change once published, so a cached copy is used as
is. Release files and the plain index paths do change: a copy older than `ttl` is fetched
again, and served stale only when the upstream cannot be reached. The cache outlives every
lab; counters of hits and misses go to a stats file so a caller can tell what was reused.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOG = logging.getLogger(__name__)

PREFIX = "/debian/"
DEFAULT_TTL = 6 * 3600.0
FETCH_TIMEOUT = 60.0
_KEY_RE = re.compile(r"[^a-z0-9]+")
_SAFE_REL = re.compile(r"^[A-Za-z0-9._+~:/-]+$")


@dataclass(frozen=True)
class Upstream:
    """One Debian repository the build machine uses: its URI and the suites it takes from it."""

    key: str
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]

    def source_line(self, base_url: str) -> str:
        comps = " ".join(self.components)
        return "\n".join(
            f"deb {base_url.rstrip('/')}{PREFIX}{self.key}/ {suite} {comps}"
            for suite in self.suites
        )


def codename(os_release: str) -> str:
    for line in os_release.splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip().strip("\"'")
    return ""


def parse_indextargets(text: str, release: str) -> list[Upstream]:
    """Upstreams from `apt-get indextargets` lines `URI<TAB>SUITE<TAB>COMPONENT<TAB>TARGET_OF`.

    Only plain http(s) `deb` repositories of this machine's release (SUITE is the codename or
    `codename-*`) are kept: lab hosts run the same release as the build machine.
    """
    found: dict[str, tuple[list[str], list[str]]] = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) != 4:
            continue
        uri, suite, component, target_of = (p.strip() for p in parts)
        if target_of != "deb" or not uri.startswith(("http://", "https://")):
            continue
        if release and suite != release and not suite.startswith(release + "-"):
            continue
        suites, comps = found.setdefault(uri.rstrip("/") + "/", ([], []))
        if suite not in suites:
            suites.append(suite)
        if component and component not in comps:
            comps.append(component)
    out: list[Upstream] = []
    used: set[str] = set()
    for uri, (suites, comps) in found.items():
        tail = uri.rstrip("/").rsplit("/", 1)[-1]
        base = _KEY_RE.sub("-", tail.lower()).strip("-") or "repo"
        key, n = base, 2
        while key in used:
            key, n = f"{base}-{n}", n + 1
        used.add(key)
        out.append(Upstream(key, uri, tuple(suites), tuple(comps or ["main"])))
    return out


Runner = Callable[[Sequence[str]], str]


def _run_text(argv: Sequence[str]) -> str:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def upstreams_from_apt(run: Runner = _run_text, os_release: Path = Path("/etc/os-release")
                       ) -> list[Upstream]:
    """This machine's Debian repositories, as its apt sees them now."""
    text = run(["apt-get", "indextargets", "--no-release-info",
                "--format", "$(REPO_URI)\t$(RELEASE)\t$(COMPONENT)\t$(TARGET_OF)"])
    try:
        release = codename(os_release.read_text())
    except OSError:
        release = ""
    return parse_indextargets(text, release)


def main_mirror(upstreams: Sequence[Upstream], release: str) -> str | None:
    """The repository carrying the release itself (what debootstrap needs)."""
    for up in upstreams:
        if release in up.suites:
            return up.uri.rstrip("/")
    return None


def apt_proxy(run: Runner = _run_text) -> str | None:
    """The HTTP proxy this machine's apt uses (Acquire::http::Proxy), if any."""
    out = run(["apt-config", "shell", "P", "Acquire::http::Proxy"]).strip()
    if not out.startswith("P="):
        return None
    value = out[2:].strip().strip("'\"")
    return value if value.startswith("http") else None


class CacheMiss(Exception):
    """The file is neither cached nor fetchable; `status` is the HTTP status to answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _immutable(rel: str) -> bool:
    return rel.startswith("pool/") or "/by-hash/" in rel


class AptCache:
    """Resolves `/debian/<key>/<path>` to a cached file, fetching it from upstream on a miss."""

    def __init__(self, root: Path, upstreams: Sequence[Upstream], *, ttl: float = DEFAULT_TTL,
                 proxy: str | None = None, stats_file: Path | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = root
        self.upstreams = {u.key: u for u in upstreams}
        self.ttl = ttl
        self.stats_file = stats_file
        self.clock = clock
        handlers: list[Any] = [urllib.request.ProxyHandler(
            {"http": proxy, "https": proxy} if proxy else {})]
        self._opener = urllib.request.build_opener(*handlers)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "stale": 0, "errors": 0,
                      "bytes_from_cache": 0, "bytes_fetched": 0}

    def _lock_for(self, rel: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(rel, threading.Lock())

    def _count(self, kind: str, size: int = 0) -> None:
        with self._guard:
            self.stats[kind] += 1
            if kind in ("hits", "stale"):
                self.stats["bytes_from_cache"] += size
            elif kind == "misses":
                self.stats["bytes_fetched"] += size
            snapshot = dict(self.stats)
        if self.stats_file is not None:
            tmp = self.stats_file.with_name(self.stats_file.name + ".tmp")
            try:
                tmp.write_text(json.dumps(snapshot, sort_keys=True) + "\n")
                os.replace(tmp, self.stats_file)
            except OSError as exc:
                LOG.warning("cannot write %s: %s", self.stats_file, exc)

    def resolve(self, url_path: str) -> Path:
        """The local file for a request path under PREFIX; raises CacheMiss."""
        rest = url_path[len(PREFIX):] if url_path.startswith(PREFIX) else ""
        key, _, rel = rest.partition("/")
        upstream = self.upstreams.get(key)
        if upstream is None or not rel or not _SAFE_REL.match(rel) or ".." in rel.split("/"):
            raise CacheMiss(404, "not a cached repository path")
        local = self.root / key / rel
        with self._lock_for(f"{key}/{rel}"):
            if local.is_file() and (
                _immutable(rel) or self.clock() - local.stat().st_mtime < self.ttl
            ):
                self._count("hits", local.stat().st_size)
                return local
            try:
                size = self._fetch(upstream.uri + urllib.parse.quote(rel), local)
            except CacheMiss:
                if local.is_file():
                    # Offline or upstream trouble: an old index is better than none.
                    self._count("stale", local.stat().st_size)
                    return local
                self._count("errors")
                raise
            self._count("misses", size)
            return local

    def _fetch(self, url: str, local: Path) -> int:
        local.parent.mkdir(parents=True, exist_ok=True)
        # The URL is an upstream from this machine's apt config plus a checked relative path.
        req = urllib.request.Request(url, headers={"User-Agent": "anywhere-agent-lab-aptcache/1"})  # noqa: S310
        fd, tmp_name = tempfile.mkstemp(dir=local.parent, prefix=".fetch-")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out, self._opener.open(req, timeout=FETCH_TIMEOUT) as resp:
                size = 0
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            os.chmod(tmp, 0o644)
            # Another lab's server may have fetched the same file: the rename is atomic either way.
            os.replace(tmp, local)
            return size
        except urllib.error.HTTPError as exc:
            raise CacheMiss(404 if exc.code in (403, 404, 410) else 502,
                            f"upstream answered {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise CacheMiss(502, f"upstream unreachable: {getattr(exc, 'reason', exc)}") from None
        finally:
            tmp.unlink(missing_ok=True)


def read_stats(path: Path) -> dict[str, int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def hit_rate(stats: dict[str, int]) -> float | None:
    """Share of requests answered from the cache (stale answers count as hits)."""
    served = stats.get("hits", 0) + stats.get("stale", 0)
    total = served + stats.get("misses", 0)
    return round(served / total, 3) if total else None


def upstreams_to_args(upstreams: Sequence[Upstream]) -> list[str]:
    return ["--apt-upstreams", json.dumps([u.__dict__ for u in upstreams])]


def upstreams_from_json(text: str) -> list[Upstream]:
    return [Upstream(str(d["key"]), str(d["uri"]), tuple(d["suites"]), tuple(d["components"]))
            for d in json.loads(text)]
