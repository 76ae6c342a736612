"""HTTP file server for the lab's package repos (apt under /apt, S3-style under /s3), and the
caching Debian proxy under /debian (see aptcache.py).

Run as `python -m anywhere_agent.lab.pkgserver --host H --port P --root DIR [--pid-file F]
[--apt-cache DIR --apt-upstreams JSON [--apt-stats FILE]]`.
Read-only, GET and HEAD only, no directory listings: lab hosts fetch files as from a mirror.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import sys
import threading
import urllib.parse
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType

from anywhere_agent.lab import aptcache

LOG = logging.getLogger(__name__)


class _Handler(SimpleHTTPRequestHandler):
    server_version = "anywhere-lab-pkgserver/1"
    sys_version = ""
    apt: aptcache.AptCache | None = None

    def do_GET(self) -> None:
        if self.apt is not None and self.path.startswith(aptcache.PREFIX):
            self._debian(head=False)
        else:
            super().do_GET()

    def do_HEAD(self) -> None:
        if self.apt is not None and self.path.startswith(aptcache.PREFIX):
            self._debian(head=True)
        else:
            super().do_HEAD()

    def _debian(self, head: bool) -> None:
        assert self.apt is not None
        try:
            local = self.apt.resolve(urllib.parse.unquote(self.path.split("?", 1)[0]))
        except aptcache.CacheMiss as exc:
            self.send_error(exc.status, str(exc))
            return
        size = local.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(size))
        self.send_header("Last-Modified", self.date_time_string(int(local.stat().st_mtime)))
        self.end_headers()
        if not head:
            with open(local, "rb") as src:
                shutil.copyfileobj(src, self.wfile)

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        self.send_error(404, "Not Found")
        return None

    def log_message(self, format: str, *args: object) -> None:
        LOG.info("%s %s", self.address_string(), format % args)


class PackageServer:
    """In-process server (tests); `serve_forever` runs it in a thread until `stop`."""

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0,
                 apt: aptcache.AptCache | None = None) -> None:
        bound = type("_BoundHandler", (_Handler,), {"apt": apt})
        handler = partial(bound, directory=str(root))
        self._httpd = ThreadingHTTPServer((host, port), handler)
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> PackageServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def serve_forever(self) -> None:
        self._httpd.serve_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m anywhere_agent.lab.pkgserver")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--pid-file", type=Path)
    parser.add_argument("--apt-cache", type=Path, help="cache dir of the /debian proxy")
    parser.add_argument("--apt-upstreams", default="[]", help="JSON list (aptcache.Upstream)")
    parser.add_argument("--apt-stats", type=Path, help="where to keep hit/miss counters")
    parser.add_argument("--apt-proxy-from-apt", action="store_true",
                        help="fetch upstreams through this machine's apt proxy (read here, "
                        "never passed on argv: it may carry a password)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    if not args.root.is_dir():
        print(f"error: {args.root} is not a directory", file=sys.stderr)
        return 2
    apt = None
    if args.apt_cache is not None:
        args.apt_cache.mkdir(parents=True, exist_ok=True)
        apt = aptcache.AptCache(args.apt_cache, aptcache.upstreams_from_json(args.apt_upstreams),
                                proxy=aptcache.apt_proxy() if args.apt_proxy_from_apt else None,
                                stats_file=args.apt_stats)
    server = PackageServer(args.root, args.host, args.port, apt=apt)

    def _stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() blocks until serve_forever returns, so it must not run on that thread.
        threading.Thread(target=server.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.pid_file:
        args.pid_file.write_text(f"{os.getpid()}\n")
    LOG.info("serving %s on %s", args.root, server.url)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
