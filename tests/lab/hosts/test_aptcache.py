"""The lab's Debian proxy: upstreams from apt's own configuration, a cache that serves pool files
as they are, refreshes release files after the TTL, and falls back to a stale copy offline."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from anywhere_agent.lab import aptcache
from anywhere_agent.lab.pkgserver import PackageServer

INDEXTARGETS = (
    "http://mirror.example/debian/\tbookworm\tmain\tdeb\n"
    "http://mirror.example/debian/\tbookworm\tmain\tdeb\n"
    "http://mirror.example/debian/\tbookworm-updates\tmain\tdeb\n"
    "http://mirror.example/debian-security/\tbookworm-security\tmain\tdeb\n"
    "http://mirror.example/debian/\tbookworm\tcontrib\tdeb\n"
    "http://other.example/debian/\ttrixie\tmain\tdeb\n"
    "http://mirror.example/debian/\tbookworm\tmain\tdeb-src\n"
    "cdrom://x/\tbookworm\tmain\tdeb\n"
)


def test_upstreams_are_this_releases_http_repositories_from_apt_indextargets() -> None:
    ups = aptcache.parse_indextargets(INDEXTARGETS, "bookworm")
    assert [(u.key, u.uri, u.suites, u.components) for u in ups] == [
        ("debian", "http://mirror.example/debian/", ("bookworm", "bookworm-updates"),
         ("main", "contrib")),
        ("debian-security", "http://mirror.example/debian-security/", ("bookworm-security",),
         ("main",)),
    ]
    assert aptcache.main_mirror(ups, "bookworm") == "http://mirror.example/debian"
    assert ups[0].source_line("http://10.0.0.1:8080") == (
        "deb http://10.0.0.1:8080/debian/debian/ bookworm main contrib\n"
        "deb http://10.0.0.1:8080/debian/debian/ bookworm-updates main contrib")


def test_upstreams_from_apt_ask_apt_and_read_the_codename(tmp_path: Path) -> None:
    asked: list[list[str]] = []
    release = tmp_path / "os-release"
    release.write_text('ID=debian\nVERSION_CODENAME=bookworm\n')

    def run(argv: object) -> str:
        asked.append(list(argv))  # type: ignore[call-overload]
        return INDEXTARGETS

    ups = aptcache.upstreams_from_apt(run, release)
    assert asked[0][:2] == ["apt-get", "indextargets"]
    assert [u.key for u in ups] == ["debian", "debian-security"]


@pytest.fixture
def upstream(tmp_path: Path) -> tuple[Path, str]:
    root = tmp_path / "upstream"
    (root / "debian/pool/main/h").mkdir(parents=True)
    (root / "debian/dists/bookworm").mkdir(parents=True)
    (root / "debian/pool/main/h/hello_1+b1_amd64.deb").write_bytes(b"deb-bytes")
    (root / "debian/dists/bookworm/InRelease").write_text("release v1\n")
    server = PackageServer(root).start()
    try:
        yield root, server.url
    finally:
        server.stop()


def fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def test_a_second_request_is_a_hit_and_pool_files_never_go_back_upstream(
        tmp_path: Path, upstream: tuple[Path, str]) -> None:
    root, url = upstream
    now = [1000.0]
    up = aptcache.Upstream("debian", url + "/debian/", ("bookworm",), ("main",))
    cache = aptcache.AptCache(tmp_path / "cache", [up], ttl=60, clock=lambda: now[0],
                              stats_file=tmp_path / "stats.json")
    proxy = PackageServer(tmp_path, apt=cache).start()
    try:
        deb = f"{proxy.url}/debian/debian/pool/main/h/hello_1%2bb1_amd64.deb"
        assert fetch(deb) == (200, b"deb-bytes")
        (root / "debian/pool/main/h/hello_1+b1_amd64.deb").unlink()  # upstream forgets it
        now[0] += 10_000
        assert fetch(deb) == (200, b"deb-bytes")
        release = f"{proxy.url}/debian/debian/dists/bookworm/InRelease"
        assert fetch(release) == (200, b"release v1\n")
        (root / "debian/dists/bookworm/InRelease").write_text("release v2\n")
        assert fetch(release) == (200, b"release v1\n")  # within the TTL: the cached copy
        old = now[0] - 120
        os.utime(tmp_path / "cache/debian/dists/bookworm/InRelease", (old, old))
        assert fetch(release) == (200, b"release v2\n")  # past the TTL: fetched again
        assert fetch(f"{proxy.url}/debian/debian/../../etc/passwd")[0] == 404
        assert fetch(f"{proxy.url}/debian/nosuch/dists/x")[0] == 404
        assert fetch(f"{proxy.url}/debian/debian/pool/main/h/absent.deb")[0] == 404
    finally:
        proxy.stop()
    stats = aptcache.read_stats(tmp_path / "stats.json")
    assert (stats["hits"], stats["misses"], stats["errors"]) == (2, 3, 1)
    assert aptcache.hit_rate(stats) == 0.4


def test_an_unreachable_upstream_serves_the_stale_release_and_502s_the_rest(
        tmp_path: Path, upstream: tuple[Path, str]) -> None:
    _, url = upstream
    up = aptcache.Upstream("debian", url + "/debian/", ("bookworm",), ("main",))
    cache = aptcache.AptCache(tmp_path / "cache", [up], ttl=0)
    cache.resolve("/debian/debian/dists/bookworm/InRelease")
    offline = aptcache.AptCache(tmp_path / "cache", [aptcache.Upstream(
        "debian", "http://127.0.0.1:9/debian/", ("bookworm",), ("main",))], ttl=0)
    assert offline.resolve("/debian/debian/dists/bookworm/InRelease").read_text() == \
        "release v1\n"
    assert offline.stats["stale"] == 1
    with pytest.raises(aptcache.CacheMiss) as miss:
        offline.resolve("/debian/debian/pool/main/x/x.deb")
    assert miss.value.status == 502
