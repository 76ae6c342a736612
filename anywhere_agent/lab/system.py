"""Build-machine primitives for the lab: run argv, track processes by PID + start time, mounts."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anywhere_agent.errors import LabError

LOG = logging.getLogger(__name__)

# Which Debian package provides each tool the lab calls, so a missing one names its fix.
TOOL_PACKAGES: Mapping[str, str] = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "ip": "iproute2",
    "nsenter": "util-linux",
    "mount": "mount",
    "umount": "mount",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}

HOST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/root",
    "TERM": "dumb",
}


def require_root() -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, mounts, nspawn)", "run it as root: sudo")


def require_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pkg = TOOL_PACKAGES.get(tool, tool)
            raise LabError(f"{tool} is not installed", f"apt-get install {pkg}")


def run(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    timeout: float = 120.0,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    what: str = "",
) -> subprocess.CompletedProcess[bytes]:
    """Run argv with a bound; a failure becomes a LabError carrying the command's last words."""
    LOG.debug("run %s", list(argv))
    try:
        proc = subprocess.run(
            list(argv),
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
            env=dict(env) if env is not None else None,
        )
    except FileNotFoundError as exc:
        tool = os.path.basename(argv[0])
        pkg = TOOL_PACKAGES.get(tool, tool)
        raise LabError(f"{tool} is not installed", f"apt-get install {pkg}") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(
            f"{what or argv[0]} did not finish within {timeout:.0f}s",
            "check the machine load and retry; `anywhere-agent lab down` cleans up",
        ) from exc
    if check and proc.returncode != 0:
        tail = _last_line(proc.stderr) or _last_line(proc.stdout)
        raise LabError(
            f"{what or ' '.join(argv[:3])} failed (exit {proc.returncode}): {tail}",
            "see the message above; `anywhere-agent lab down` removes a half-built lab",
        )
    return proc


def _last_line(data: bytes) -> str:
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1].strip()[:300] if lines else ""


# -- processes ---------------------------------------------------------------------------


def log_tail(path: Path) -> str:
    """The last non-empty line of a log, for one-line errors about a process that died."""
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1][:200] if lines else "empty log"


def start_time(pid: int) -> int | None:
    """Kernel start time of pid in clock ticks (field 22 of /proc/PID/stat), None if gone.

    Zombies count as gone: they hold no resources and cannot be signalled usefully.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses, so split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process identified by PID *and* start time, so a recycled PID is never signalled."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        st = start_time(pid)
        if st is None:
            raise LabError(f"process {pid} exited right after it started", "see its log file")
        return cls(pid, st)

    def alive(self) -> bool:
        return start_time(self.pid) == self.start

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def to_dict(self) -> dict[str, int]:
        return {"pid": self.pid, "start": self.start}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProcessRef:
        return cls(int(data["pid"]), int(data["start"]))


def spawn(argv: Sequence[str], log: Path, env: Mapping[str, str]) -> ProcessRef:
    """Start `argv` in a session of its own, stdin closed, stdout and stderr appended to `log`."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env),
        )
    return ProcessRef.of(proc.pid)


def reap(pid: int) -> None:
    """Collect an exited child of ours so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop_processes(
    refs: Sequence[ProcessRef], grace: float = 10.0, first: int = signal.SIGTERM
) -> list[ProcessRef]:
    """Send `first` to all, wait up to `grace` seconds, SIGKILL the rest; returns survivors."""
    for ref in refs:
        ref.signal(first)
    pending = _wait_gone(list(refs), grace)
    for ref in pending:
        LOG.warning("pid %s ignored SIGTERM for %.0fs, killing it", ref.pid, grace)
        ref.signal(signal.SIGKILL)
    return _wait_gone(pending, 5.0)


def _wait_gone(pending: list[ProcessRef], seconds: float) -> list[ProcessRef]:
    """Reap and re-check `pending` for up to `seconds`; returns those still alive."""
    deadline = time.monotonic() + seconds
    while pending and time.monotonic() < deadline:
        for ref in pending:
            reap(ref.pid)
        pending = [r for r in pending if r.alive()]
        if pending:
            time.sleep(0.05)
    return pending


def iter_pids() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def proc_status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


# -- mounts ------------------------------------------------------------------------------


def mount_overlay(lowerdirs: str | Path, upper: Path, work: Path, merged: Path, what: str) -> None:
    """Mount an overlayfs of `lowerdirs` (colon-separated, topmost first) at `merged`."""
    run(
        [
            "mount",
            "-t",
            "overlay",
            "overlay",
            "-o",
            f"lowerdir={lowerdirs},upperdir={upper},workdir={work}",
            str(merged),
        ],
        what=what,
    )


def _unescape_mount(field: str) -> str:
    # /proc/mounts escapes space, tab, newline and backslash as octal.
    return (
        field.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
    )


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below path in our mount namespace, deepest first."""
    base = str(path.resolve()) if path.exists() else str(path)
    found: list[Path] = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        target = _unescape_mount(parts[1])
        if target == base or target.startswith(base.rstrip("/") + "/"):
            found.append(Path(target))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def unmount_under(path: Path) -> None:
    """Unmount everything at or below path; lazily if busy, because a dead host may pin it."""
    for target in mounts_under(path):
        for _attempt in range(5):
            # A container's last process may still be exiting; give it a moment first.
            proc = run(["umount", str(target)], check=False, timeout=30)
            if proc.returncode == 0 or not mounts_under(target):
                break
            time.sleep(0.2)
        if proc.returncode != 0 and mounts_under(target):
            LOG.warning("umount %s busy, detaching lazily", target)
            run(["umount", "-l", str(target)], check=False, timeout=30)
    left = mounts_under(path)
    if left:
        raise LabError(f"could not unmount {left[0]}", f"find its users with `fuser -vm {left[0]}`")


def remove_tree(path: Path) -> None:
    """rm -r that refuses to descend into mounts (a leftover bind of /proc or /sys)."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_under(path)
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise LabError(
                f"could not remove {path}: {exc}", f"remove it by hand: rm -r {path}"
            ) from exc


# -- locks -------------------------------------------------------------------------------


@contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Exclusive flock on path, waiting at most timeout seconds (another lab may hold it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise LabError(
                        f"{what} is busy (lock {path} held for over {timeout:.0f}s)",
                        "wait for the other lab command to finish, then retry",
                    ) from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing releases the flock
