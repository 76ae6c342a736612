"""Network probes for preflight: endpoint reachability (direct or via proxy) and IMDS.

Every socket is opened through an injected `Connector`, so tests map names to loopback
servers and never touch a real address. Proxy selection follows Go's `httpproxy` rules,
because the SSM agent, the ECS agent and Docker (all Go) are what will use the proxy:
https URLs use `proxy.https`, http URLs use `proxy.http` (no fallback between them),
`no_proxy` entries are `*`, IPs, CIDRs, `host`, `.host` or `*.host`, each with an optional
`:port`, and localhost/loopback addresses are never proxied.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from anywhere_agent.config import Proxy

Connector = Callable[[str, int, float], socket.socket]

IMDS_ADDRESS = "169.254.169.254"
# On EC2 the metadata service answers in milliseconds; anywhere else nothing listens, and a
# short bound keeps preflight fast on the on-prem hosts it is meant for.
IMDS_TIMEOUT_SECONDS = 0.5
_MAX_HEAD = 16 * 1024


def tcp_connect(host: str, port: int, timeout: float) -> socket.socket:
    """The production connector: resolve and connect, bounded by `timeout`."""
    return socket.create_connection((host, port), timeout=timeout)


@dataclass(frozen=True)
class Probe:
    """Outcome of one reachability probe; `via` is "direct" or "proxy HOST:PORT"."""

    ok: bool
    via: str
    detail: str
    # dns | refused | timeout | proxy | error: picks the fix the caller prints
    reason: str = ""


def _split_host_port(entry: str) -> tuple[str, str]:
    if entry.startswith("["):  # [v6]:port
        host, _, rest = entry[1:].partition("]")
        return host, rest.lstrip(":")
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        return host, port
    return entry, ""


def _ip(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None


def bypasses_proxy(host: str, port: int, no_proxy: str) -> bool:
    """Whether a request to host:port goes direct under `no_proxy` (Go httpproxy rules)."""
    host = host.lower().rstrip(".")
    addr = _ip(host)
    if host == "localhost" or (addr is not None and addr.is_loopback):
        return True
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if "/" in entry:
            try:
                if addr is not None and addr in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name, entry_port = _split_host_port(entry)
        if entry_port and entry_port != str(port):
            continue
        if name.startswith("*."):
            name = name[1:]
        if name.startswith("."):
            if host.endswith(name):
                return True
        elif host == name or host.endswith("." + name):
            return True
    return False


def proxy_for(url: str, proxy: Proxy) -> str:
    """The proxy URL a Go agent would use for `url`, or "" for a direct connection."""
    parts = urlsplit(url)
    chosen = proxy.https if parts.scheme == "https" else proxy.http
    if not chosen or not parts.hostname:
        return ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return "" if bypasses_proxy(parts.hostname, port, proxy.no_proxy) else chosen


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _read_head(sock: socket.socket, deadline: float) -> tuple[int, dict[str, str], bytes]:
    """Read an HTTP response head; returns (status, lower-cased headers, bytes after head)."""
    data = b""
    while b"\r\n\r\n" not in data:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > _MAX_HEAD:
            break
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    fields = lines[0].split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ValueError(f"not an HTTP response: {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return int(fields[1]), headers, rest


def _read_body(sock: socket.socket, headers: dict[str, str], rest: bytes,
               deadline: float) -> bytes:
    length = int(headers.get("content-length", "0") or 0)
    body = rest
    while len(body) < length:
        sock.settimeout(_remaining(deadline))
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return body[:length]


def _proxy_auth(proxy_url: str) -> str:
    parts = urlsplit(proxy_url)
    if parts.username is None:
        return ""
    creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    return "Proxy-Authorization: Basic " + base64.b64encode(creds.encode()).decode() + "\r\n"


def _failure(err: BaseException, where: str) -> tuple[str, str]:
    if isinstance(err, socket.gaierror):
        return "dns", f"cannot resolve {where}"
    if isinstance(err, ConnectionRefusedError):
        return "refused", f"{where} refused the connection"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return "timeout", f"no answer from {where} in time"
    return "error", f"{where}: {type(err).__name__}: {err}"


def probe_url(url: str, proxy: Proxy, connect: Connector, timeout: float) -> Probe:
    """Can this host open a connection to `url`'s host:port the way the agents would?

    Direct: a TCP connection is enough (TLS is not verified). Through a proxy: https URLs
    need a 2xx answer to CONNECT, http URLs need a proxy GET not answered 407/502/503/504.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = f"{host}:{port}"
    deadline = time.monotonic() + timeout
    proxy_url = proxy_for(url, proxy)
    if not proxy_url:
        try:
            connect(host, port, timeout).close()
        except OSError as err:
            reason, detail = _failure(err, target)
            return Probe(False, "direct", detail, reason)
        return Probe(True, "direct", f"{target} accepts connections")

    pparts = urlsplit(proxy_url)
    phost, pport = pparts.hostname or "", pparts.port or 80
    via = f"proxy {phost}:{pport}"
    if parts.scheme == "https":
        request = f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n"
    else:
        request = (f"GET {parts.scheme}://{target}/ HTTP/1.1\r\nHost: {target}\r\n"
                   "Connection: close\r\n")
    request += _proxy_auth(proxy_url) + "\r\n"
    try:
        sock = connect(phost, pport, timeout)
    except OSError as err:
        reason, detail = _failure(err, f"proxy {phost}:{pport}")
        return Probe(False, via, detail, reason)
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(request.encode("ascii"))
        status, _, _ = _read_head(sock, deadline)
    except (OSError, ValueError) as err:
        reason, detail = _failure(err, f"proxy {phost}:{pport}")
        return Probe(False, via, detail, reason)
    finally:
        sock.close()
    if status == 407:
        return Probe(False, via, f"proxy {phost}:{pport} wants authentication (407)", "proxy")
    good = 200 <= status < 300 if parts.scheme == "https" else status not in (502, 503, 504)
    if not good:
        return Probe(False, via, f"proxy {phost}:{pport} answered {status} for {target}",
                     "proxy")
    return Probe(True, via, f"{target} reachable through proxy {phost}:{pport}")


def endpoint_clock(url: str, connect: Connector, timeout: float) -> float | None:
    """The endpoint's own time (epoch seconds, from its HTTP `Date` header), or None.

    AWS refuses a request signed more than 5 minutes from its clock, before looking at
    anything else; every AWS answer, even an error, carries `Date`, so one direct HEAD tells
    how far this host's clock is off before any signed call fails. Certificates are verified
    as the agents verify them.
    """
    import ssl
    from email.utils import parsedate_to_datetime

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    deadline = time.monotonic() + timeout
    try:
        sock = connect(host, port, _remaining(deadline))
        if parts.scheme == "https":
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
        try:
            sock.settimeout(_remaining(deadline))
            sock.sendall(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                         .encode("ascii"))
            _, headers, _ = _read_head(sock, deadline)
        finally:
            sock.close()
        return parsedate_to_datetime(headers["date"]).timestamp()
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class ImdsFinding:
    """What 169.254.169.254 said: role names if an instance role is attached."""

    reachable: bool
    roles: tuple[str, ...] = ()
    detail: str = ""


class _NoConnection(Exception):
    """Nothing accepted a TCP connection at the metadata address."""


def _imds_request(connect: Connector, request: str, deadline: float) -> tuple[int, bytes]:
    try:
        sock = connect(IMDS_ADDRESS, 80, _remaining(deadline))
    except OSError as err:
        raise _NoConnection(str(err)) from err
    try:
        sock.settimeout(_remaining(deadline))
        sock.sendall(request.encode("ascii"))
        status, headers, rest = _read_head(sock, deadline)
        return status, _read_body(sock, headers, rest, deadline)
    finally:
        sock.close()


def probe_instance_role(connect: Connector,
                        timeout: float = IMDS_TIMEOUT_SECONDS) -> ImdsFinding:
    """Ask the EC2 metadata service (IMDSv2, then v1) whether an IAM role is attached.

    Always direct: the agents' NO_PROXY carries 169.254.169.254, so a proxy never sees it.
    """
    deadline = time.monotonic() + timeout
    host_header = f"Host: {IMDS_ADDRESS}\r\n"
    token = ""
    try:
        status, body = _imds_request(
            connect,
            "PUT /latest/api/token HTTP/1.1\r\n" + host_header
            + "X-aws-ec2-metadata-token-ttl-seconds: 60\r\nContent-Length: 0\r\n"
            "Connection: close\r\n\r\n",
            deadline,
        )
        if status == 200:
            token = body.decode("ascii", "replace").strip()
        status, body = _imds_request(
            connect,
            "GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n" + host_header
            + (f"X-aws-ec2-metadata-token: {token}\r\n" if token else "")
            + "Connection: close\r\n\r\n",
            deadline,
        )
    except _NoConnection:
        return ImdsFinding(False, detail=f"nothing answers at {IMDS_ADDRESS}")
    except (OSError, ValueError) as err:
        return ImdsFinding(True, detail=f"{IMDS_ADDRESS} accepted a connection but did not "
                                        f"answer as instance metadata ({type(err).__name__})")
    if status == 200:
        roles = tuple(r.strip() for r in body.decode("utf-8", "replace").splitlines()
                      if r.strip())
        if roles:
            return ImdsFinding(True, roles)
    if status in (200, 404):
        return ImdsFinding(True, detail="instance metadata answers but no IAM role is attached")
    return ImdsFinding(True, detail=f"instance metadata answered {status} for the role list")
