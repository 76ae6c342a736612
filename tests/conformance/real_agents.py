"""The real SSM and ECS agents for the conformance tier: where their binaries come from, and a
private mount namespace in which they run without changing the machine."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import socketserver
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

AGENTS_ENV = "ANYWHERE_REAL_AGENTS"
SSM_REQUIRED = ("amazon-ssm-agent", "ssm-agent-worker")
# Copied too when present: the core agent starts documents and sessions through them.
SSM_OPTIONAL = ("ssm-document-worker", "ssm-session-worker", "ssm-session-logger", "ssm-cli")
ECS_AGENT = "agent"
DOCKER_TOOLS = ("dockerd", "containerd", "containerd-shim-runc-v2", "runc", "docker-init")
# Everything the agents (and their dockerd) write lives below these; each gets an overlay.
OVERLAID = ("/etc", "/var", "/root", "/usr/bin", "/run")


@dataclass(frozen=True)
class Binaries:
    """The agents' executables, and the directory that holds dockerd (None: not found)."""

    ssm: dict[str, Path]
    ecs_agent: Optional[Path]
    docker_dir: Optional[Path]
    source: str  # "binaries" or "packages"


def skip_reason() -> Optional[str]:
    """Why the tier cannot run here, or None."""
    if not os.environ.get(AGENTS_ENV):
        return (f"the conformance tier runs the real agents: set {AGENTS_ENV}=DIR to a directory "
                "with amazon-ssm-agent, ssm-agent-worker and the ECS `agent` (or AWS's "
                ".deb/.rpm packages); CI has none")
    if os.geteuid() != 0:
        return "the conformance tier needs root (mount namespaces, overlays, dockerd)"
    for tool, package in (("unshare", "util-linux"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"the conformance tier needs {tool}: apt-get install {package}"
    return None


def locate(spec: str, scratch: Path) -> Binaries:
    """Find the binaries in DIR, unpacking .deb/.rpm packages found there into `scratch`."""
    root = Path(spec)
    if not root.is_dir():
        raise FileNotFoundError(f"{AGENTS_ENV}={spec} is not a directory")
    packages = sorted(p for p in root.iterdir() if p.suffix in (".deb", ".rpm"))
    search = [root]
    if packages:
        for package in packages:
            dest = scratch / package.stem
            unpack(package, dest)
            search += [dest / "usr/bin", dest / "usr/sbin", dest / "usr/libexec"]
            image = dest / "var/cache/ecs"
            for tarball in sorted(image.glob("ecs-agent-v*.tar")) if image.is_dir() else []:
                agent = extract_from_image(tarball, "agent", dest / "ecs-agent-image")
                if agent is not None:
                    search.append(agent.parent)
    ssm = {name: found for name in SSM_REQUIRED + SSM_OPTIONAL
           if (found := _first(search, name)) is not None}
    missing = [name for name in SSM_REQUIRED if name not in ssm]
    if missing:
        raise FileNotFoundError(f"{spec} holds no {', '.join(missing)}")
    docker = _first([root, *search], "dockerd") or _which("dockerd")
    return Binaries(ssm=ssm, ecs_agent=_first(search, ECS_AGENT),
                    docker_dir=docker.parent if docker else None,
                    source="packages" if packages else "binaries")


def _first(dirs: Sequence[Path], name: str) -> Optional[Path]:
    for d in dirs:
        candidate = d / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _which(name: str) -> Optional[Path]:
    found = shutil.which(name)
    return Path(found) if found else None


def unpack(package: Path, dest: Path) -> None:
    """Unpack a .deb (dpkg-deb) or .rpm (rpm2cpio | cpio) without installing it."""
    dest.mkdir(parents=True, exist_ok=True)
    if package.suffix == ".deb":
        subprocess.run(["dpkg-deb", "-x", str(package), str(dest)], check=True)
        return
    if shutil.which("rpm2cpio") is None or shutil.which("cpio") is None:
        raise FileNotFoundError(f"unpacking {package.name} needs rpm2cpio and cpio "
                                "(apt-get install rpm2cpio cpio)")
    archive = subprocess.run(["rpm2cpio", str(package)], check=True, capture_output=True).stdout
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=dest, check=True)


def extract_from_image(tarball: Path, member: str, dest: Path) -> Optional[Path]:
    """Copy `member` out of a `docker save` archive (ecs-init ships the agent that way)."""
    found: Optional[bytes] = None
    with tarfile.open(tarball) as outer:
        for entry in outer.getmembers():
            if not entry.isfile() or not (entry.name.endswith("layer.tar")
                                          or "/blobs/" in f"/{entry.name}"):
                continue
            layer = outer.extractfile(entry)
            if layer is None:
                continue
            try:
                with tarfile.open(fileobj=io.BytesIO(layer.read()), mode="r:*") as inner:
                    for item in inner.getmembers():
                        if item.isfile() and item.name.lstrip("./") == member:
                            data = inner.extractfile(item)
                            found = data.read() if data is not None else found
            except tarfile.TarError:
                continue  # a config or manifest blob, not a layer
    if found is None:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / member
    path.write_bytes(found)
    path.chmod(0o755)
    return path


# -- the namespace -----------------------------------------------------------------------


class Namespace:
    """A private mount namespace with overlays over OVERLAID, held open by one `sleep`.

    Everything the agents write lands in the overlays' upper directories under `work`; the
    machine's own /etc, /var, /root, /usr/bin and /run never change. Processes started in it
    are children of the test, each in its own process group, and are killed by PID.
    """

    def __init__(self, work: Path) -> None:
        self.work = work
        self.holder: Optional[subprocess.Popen[bytes]] = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> Namespace:
        lines = ["set -e"]
        for target in OVERLAID:
            name = target.strip("/").replace("/", "_")
            upper, scratch = self.work / "upper" / name, self.work / "ovl-work" / name
            upper.mkdir(parents=True, exist_ok=True)
            scratch.mkdir(parents=True, exist_ok=True)
            lines.append(f"mount -t overlay overlay -o lowerdir={target},upperdir={upper},"
                         f"workdir={scratch} {target}")
        lines += ["echo ready", "exec sleep infinity"]
        self.holder = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(lines)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        assert self.holder.stdout is not None
        if self.holder.stdout.readline().strip() != b"ready":
            self.holder.wait(timeout=10)
            err = self.holder.stderr.read().decode() if self.holder.stderr else ""
            raise RuntimeError(f"could not set up the agents' mount namespace: {err.strip()}")
        return self

    @property
    def pid(self) -> int:
        if self.holder is None:
            raise RuntimeError("the namespace is not started")
        return self.holder.pid

    def path(self, inside: str) -> Path:
        """The namespace's view of an absolute path, from outside it (absolute symlinks on
        the way, such as /var/run, resolve against the machine's root: avoid them)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def write(self, inside: str, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def _argv(self, argv: Sequence[str]) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--mount", "--", *argv]

    def run(self, argv: Sequence[str], env: Mapping[str, str], timeout: float = 120,
            stdin: Optional[bytes] = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(self._argv(argv), env=dict(env), capture_output=True,
                              timeout=timeout, input=stdin, check=False)

    def spawn(self, name: str, argv: Sequence[str], env: Mapping[str, str]) -> int:
        """Start a long-running process inside; its output goes to work/NAME.out."""
        if name in self.processes and self.processes[name].poll() is None:
            raise RuntimeError(f"{name} already runs (PID {self.processes[name].pid})")
        out = (self.work / f"{name}.out").open("ab")
        try:
            # nsenter execs the command: this PID is the agent's own.
            proc = subprocess.Popen(self._argv(argv), env=dict(env), stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()
        self.processes[name] = proc
        return proc.pid

    def running(self, name: str) -> bool:
        proc = self.processes.get(name)
        return proc is not None and proc.poll() is None

    def stop(self, name: str, grace: float = 20.0) -> Optional[int]:
        """SIGTERM the process group we started, SIGKILL after `grace`; the exit code."""
        proc = self.processes.get(name)
        if proc is None:
            return None
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # Children that outlived their parent (the SSM worker, containerd) share its group.
        _signal_group(proc.pid, signal.SIGKILL)
        return proc.returncode

    def members(self) -> list[int]:
        """PIDs of every process in this mount namespace except the holder."""
        try:
            mine = os.readlink(f"/proc/{self.pid}/ns/mnt")
        except OSError:
            return []
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == self.pid:
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/mnt") == mine:
                    found.append(int(entry))
            except OSError:
                continue
        return found

    def close(self) -> list[int]:
        """Stop everything started here, then the holder; PIDs that had to be killed late."""
        for name in reversed(list(self.processes)):
            self.stop(name)
        leftovers = self.members() if self.holder is not None else []
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.holder is not None and self.holder.poll() is None:
            _signal_group(self.holder.pid, signal.SIGKILL)
            self.holder.wait(timeout=10)
        return leftovers


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


# -- a trap for traffic that should not leave the lab -----------------------------------


@dataclass
class Trap:
    """An HTTP(S) proxy on loopback that forwards nothing and records what was asked.

    The agents get it as HTTP_PROXY/HTTPS_PROXY, so a call to anything but the lab (AWS's
    real endpoints, instance metadata) ends here instead of leaving the machine.
    """

    seen: list[str] = field(default_factory=list)
    port: int = 0
    _server: Optional[socketserver.ThreadingTCPServer] = None

    def start(self) -> Trap:
        trap = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    first = self.rfile.readline(4096).decode("latin-1").strip()
                except OSError:
                    return
                if first:
                    trap.seen.append(first)
                try:
                    self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n"
                                     b"Connection: close\r\n\r\n")
                except OSError:
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name="conformance-trap").start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


# -- small readers -----------------------------------------------------------------------


def port_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port (a TIME-WAIT from an ephemeral port does not count:
    the agent's listener sets SO_REUSEADDR)."""
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def http_json(url: str, timeout: float = 3.0) -> Optional[dict[str, Any]]:
    """GET a loopback JSON document; None when nothing answers."""
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            value = json.loads(answer.read())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def logfmt_events(text: str, messages: Sequence[str]) -> Iterator[tuple[str, str]]:
    """(time, msg) for each ECS agent log line (logfmt) whose msg starts with one of `messages`."""
    for line in text.splitlines():
        fields = _logfmt(line)
        msg = fields.get("msg", "")
        if msg.startswith(tuple(messages)):
            yield fields.get("time", ""), msg


def _logfmt(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        eq = line.find("=", i)
        if eq < 0:
            break
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            j = i + 1
            buf = []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(line[j])
                j += 1
            out[key] = "".join(buf)
            i = j + 1
        else:
            j = line.find(" ", i)
            j = n if j < 0 else j
            out[key] = line[i:j]
            i = j
    return out


def wait_for(predicate: Any, timeout: float, interval: float = 1.0) -> Any:
    """Poll `predicate` until it returns something truthy or `timeout` passes (then None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
