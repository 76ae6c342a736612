"""`anywhere-agent support-bundle`: one redacted, size-bounded .tar.gz, mode 0600."""

from __future__ import annotations

import io
import json
import os
import socket
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Optional

from anywhere_agent.host.gateway import Host
from anywhere_agent.host.loopback import HttpGet, loopback_get
from anywhere_agent.support.collect import Collection, Collector, NodeFacts, manifest

DEFAULT_DIR = "/var/tmp"


@dataclass(frozen=True)
class BundleResult:
    path: str
    bytes: int
    collection: Collection

    def to_dict(self) -> dict[str, Any]:
        out = self.collection
        return {"path": self.path, "bytes": self.bytes, "entries": len(out.entries),
                "redactions": out.redactions,
                "truncated": [e.name for e in out.entries if e.truncated],
                "omitted": out.omitted, "errors": out.errors}


def _hostname(host: Host) -> str:
    name = (host.read_text("/etc/hostname") or "").strip() or socket.gethostname()
    return "".join(c if c.isalnum() or c in "-." else "_" for c in name)[:64] or "node"


def output_path(host: Host, output: Optional[str], hostname: str, stamp: str) -> str:
    """The node path to write: `output`, a file named for host and time inside `output` when
    it is a directory, or that file in /var/tmp (not /tmp: it outlives a reboot)."""
    name = f"anywhere-agent-support-{hostname}-{stamp}.tar.gz"
    if not output:
        return f"{DEFAULT_DIR}/{name}"
    path = os.path.abspath(output) if host.root.as_posix() == "/" else output
    return f"{path.rstrip('/')}/{name}" if host.path(path).is_dir() else path


def pack(out: Collection, top: str, meta: dict[str, Any], mtime: float) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        members = [("manifest.json", (json.dumps(meta, indent=2) + "\n").encode())]
        members += [(e.name, e.data) for e in out.entries]
        for name, data in members:
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size, info.mode, info.mtime = len(data), 0o600, int(mtime)
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def build(host: Host, facts: NodeFacts, output: Optional[str] = None,
          http_get: HttpGet = loopback_get, now: Callable[[], float] = time.time) -> BundleResult:
    """Collect, redact, bound, pack, and write the bundle 0600 through the host gateway."""
    when = datetime.fromtimestamp(now(), timezone.utc)
    stamp = when.strftime("%Y%m%dT%H%M%SZ")
    hostname = _hostname(host)
    path = output_path(host, output, hostname, stamp)
    # Fail on an unwritable destination before minutes of collecting, not after.
    host.check_writable(os.path.dirname(path) or "/")
    out = Collector(host, facts, http_get, now).collect()
    meta = manifest(out, hostname, when.isoformat().replace("+00:00", "Z"))
    data = pack(out, f"anywhere-agent-support-{hostname}-{stamp}", meta, now())
    host.write_atomic(path, data, mode=0o600)
    return BundleResult(path, len(data), out)
