"""The host gateway: every side effect on a node (commands, files, services, packages) goes here.

Built with a `root` path and a command runner, so unit tests run against a temp directory with a
scripted runner, and the lab and real hosts run against `/` with real processes.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from anywhere_agent.errors import HostIOError

if TYPE_CHECKING:
    import ctypes

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def last_line(self) -> str:
        lines = [ln for ln in (self.stderr or self.stdout).strip().splitlines() if ln.strip()]
        return lines[-1].strip() if lines else f"exit {self.returncode}"


@dataclass(frozen=True)
class Tail:
    """Part of a file read by `Host.read_tail`: bytes from `offset` to `size` (its end then);
    `ident` (device, inode) tells a rotated file from the one read before."""

    data: bytes
    offset: int
    size: int
    ident: tuple[int, int]

    @property
    def truncated(self) -> bool:
        return self.offset > 0


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Result: ...


def subprocess_runner(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Result:
    """Run argv (never a shell string); a missing program is exit 127 like a shell would say."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("LC_ALL", "C")
    try:
        proc = subprocess.run(
            list(argv), input=input, env=full_env, timeout=timeout, capture_output=True,
            check=False,
        )
    except FileNotFoundError:
        return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
    except subprocess.TimeoutExpired:
        return Result(tuple(argv), 124, "", f"{argv[0]}: timed out after {timeout}s")
    return Result(
        tuple(argv), proc.returncode,
        proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"),
    )


def _libc() -> ctypes.CDLL | None:
    """libc for prctl, loaded in the parent (never import in a forked child). ctypes is
    imported here, not at the top: only a child holding a secret needs it, and a daemon that
    never starts one (the supervisor) should not keep it resident."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


def _die_with_parent(  # pragma: no cover - runs in the forked child
    parent: int, libc: ctypes.CDLL | None,
) -> None:
    """In the child before exec: SIGKILL when our process dies, even by SIGKILL (Linux)."""
    try:
        if libc is not None:
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except AttributeError:  # a libc without prctl (not Linux)
        pass
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def contained_runner(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Result:
    """Like `subprocess_runner`, for a child whose argv holds a secret: it runs in its own
    process group, dies with this process (PR_SET_PDEATHSIG, so also on kill -9), and is killed
    with its group when we are interrupted or it times out. Nothing outlives install."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env.setdefault("LC_ALL", "C")
    parent = os.getpid()
    libc = _libc()
    try:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
            start_new_session=True, preexec_fn=lambda: _die_with_parent(parent, libc))
    except FileNotFoundError:
        return Result(tuple(argv), 127, "", f"{argv[0]}: command not found")
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return Result(tuple(argv), 124, "", f"{argv[0]}: timed out after {timeout}s")
    except BaseException:
        _kill_group(proc)  # SIGINT/SIGTERM handled as exceptions: the child goes first
        raise
    return Result(tuple(argv), proc.returncode, out.decode("utf-8", "replace"),
                  err.decode("utf-8", "replace"))


def _program(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args
    first = args[0] if isinstance(args, (list, tuple)) and args else args
    return os.path.basename(str(first))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=10)  # a child stuck in the kernel (D state) must not hang us
    except subprocess.TimeoutExpired:
        # The program's name only: its argv may carry a secret (the register child's code).
        LOG.warning("%s (pid %d) did not exit after SIGKILL", _program(proc), proc.pid)


def _io_error(path: Path, err: OSError, doing: str) -> HostIOError:
    fixes = {
        errno.EROFS: "the filesystem is read-only; remount it read-write",
        errno.EACCES: "run as root (sudo anywhere-agent ...)",
        errno.EPERM: "run as root and check for immutable attributes (lsattr)",
        errno.ENOSPC: "free disk space on that filesystem",
        errno.EDQUOT: "raise the disk quota or free space",
    }
    fix = fixes.get(err.errno or 0, "check the path and its permissions")
    return HostIOError(f"cannot {doing} {path}: {err.strerror}", fix)


class Host:
    """A node seen through its root path. Paths given to methods are absolute node paths."""

    def __init__(self, root: Path | str = "/", runner: Runner = subprocess_runner) -> None:
        self.root = Path(root)
        self._runner = runner
        self.services = Services(self)

    # -- commands --------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 300.0,
        contained: bool = False,
    ) -> Result:
        """Run argv; `contained` for a child holding a secret (see `contained_runner`)."""
        LOG.debug("run %s", argv[0])
        runner = contained_runner if contained and self._runner is subprocess_runner \
            else self._runner
        return runner(argv, input=input, env=env, timeout=timeout)

    # -- files -----------------------------------------------------------------------------
    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def exists(self, node_path: str) -> bool:
        return self.path(node_path).exists()

    def read_bytes(self, node_path: str) -> bytes | None:
        try:
            return self.path(node_path).read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            raise _io_error(self.path(node_path), err, "read") from None

    def read_text(self, node_path: str) -> str | None:
        data = self.read_bytes(node_path)
        return None if data is None else data.decode("utf-8", "replace")

    def read_tail(self, node_path: str, max_bytes: int, start: int = 0) -> Tail | None:
        """What a growing file (a log) holds from byte `start` on, at most its last
        `max_bytes`, without reading the whole file; None if it does not exist."""
        try:
            with self.path(node_path).open("rb") as handle:
                st = os.fstat(handle.fileno())
                begin = max(start, st.st_size - max_bytes, 0)
                handle.seek(begin)
                data = handle.read(max(0, st.st_size - begin))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except OSError as err:
            raise _io_error(self.path(node_path), err, "read") from None
        return Tail(data, begin, st.st_size, (st.st_dev, st.st_ino))

    def mode(self, node_path: str) -> int | None:
        try:
            return self.path(node_path).stat().st_mode & 0o7777
        except FileNotFoundError:
            return None

    def mtime(self, node_path: str) -> float | None:
        try:
            return self.path(node_path).stat().st_mtime
        except FileNotFoundError:
            return None

    def would_change(self, node_path: str, content: bytes | str, mode: int = 0o644) -> bool:
        data = content.encode() if isinstance(content, str) else content
        return self.read_bytes(node_path) != data or self.mode(node_path) != mode

    def write_atomic(self, node_path: str, content: bytes | str, mode: int = 0o644) -> bool:
        """Write via a temp file + rename in the same directory; returns whether anything changed.

        The temp file is created with `mode` from the start, so a secret is never readable by
        others even for an instant.
        """
        data = content.encode() if isinstance(content, str) else content
        if not self.would_change(node_path, data, mode):
            return False
        target = self.path(node_path)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        except OSError as err:
            raise _io_error(target, err, "write") from None
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except OSError as err:
            Path(tmp).unlink(missing_ok=True)
            raise _io_error(target, err, "write") from None
        return True

    def remove(self, node_path: str) -> bool:
        try:
            self.path(node_path).unlink()
            return True
        except FileNotFoundError:
            return False
        except OSError as err:
            raise _io_error(self.path(node_path), err, "remove") from None

    def remove_tree(self, node_path: str) -> bool:
        """Remove a directory we own (state, config); never follows symlinks out of it."""
        import shutil

        target = self.path(node_path)
        if not target.exists() and not target.is_symlink():
            return False
        try:
            if target.is_symlink() or target.is_file():
                target.unlink()
            else:
                shutil.rmtree(target)
        except OSError as err:
            raise _io_error(target, err, "remove") from None
        return True

    def ensure_dir(self, node_path: str, mode: int = 0o755) -> bool:
        """Create a directory (and its parents) with `mode`, or set its mode; True if changed."""
        target = self.path(node_path)
        try:
            if target.is_dir():
                if target.stat().st_mode & 0o7777 == mode:
                    return False
            else:
                target.mkdir(parents=True, exist_ok=True)
            os.chmod(target, mode)
        except OSError as err:
            raise _io_error(target, err, "create") from None
        return True

    def listdir(self, node_path: str) -> list[str]:
        try:
            return sorted(os.listdir(self.path(node_path)))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def check_writable(self, node_dir: str) -> None:
        """Prove we can create a file in `node_dir` (or its nearest existing parent)."""
        target = self.path(node_dir)
        probe_dir = target
        while not probe_dir.exists() and probe_dir != probe_dir.parent:
            probe_dir = probe_dir.parent
        try:
            fd, tmp = tempfile.mkstemp(prefix=".anywhere-agent-probe.", dir=probe_dir)
            os.close(fd)
            os.unlink(tmp)
        except OSError as err:
            raise _io_error(probe_dir, err, "write to") from None


@dataclass(frozen=True)
class UnitState:
    name: str
    load_state: str = "not-found"
    active_state: str = "inactive"
    sub_state: str = "dead"
    unit_file_state: str = ""
    main_pid: int = 0
    n_restarts: int = 0
    active_enter_timestamp: str = ""

    @property
    def exists(self) -> bool:
        return self.load_state not in ("not-found", "")

    @property
    def active(self) -> bool:
        return self.active_state in ("active", "reloading", "activating")

    @property
    def enabled(self) -> bool:
        return self.unit_file_state in ("enabled", "enabled-runtime", "static", "alias")


class Services:
    """systemd through `systemctl`; all methods take unit names like `ecs` or `ecs.service`."""

    _PROPS = ("LoadState", "ActiveState", "SubState", "UnitFileState", "MainPID", "NRestarts",
              "ActiveEnterTimestamp")

    def __init__(self, host: Host) -> None:
        self._host = host

    def state(self, unit: str) -> UnitState:
        res = self._host.run(["systemctl", "show", unit, "--property=" + ",".join(self._PROPS)],
                             timeout=30)
        if not res.ok:
            return UnitState(unit)
        props = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)

        def num(key: str) -> int:
            value = props.get(key, "0")
            return int(value) if value.isdigit() else 0

        return UnitState(
            name=unit,
            load_state=props.get("LoadState", "not-found"),
            active_state=props.get("ActiveState", "inactive"),
            sub_state=props.get("SubState", "dead"),
            unit_file_state=props.get("UnitFileState", ""),
            main_pid=num("MainPID"),
            n_restarts=num("NRestarts"),
            active_enter_timestamp=props.get("ActiveEnterTimestamp", ""),
        )

    def _ctl(self, *args: str, timeout: float = 120.0) -> None:
        res = self._host.run(["systemctl", *args], timeout=timeout)
        if not res.ok:
            # "Unit ecs.service is masked." has one fix, and it is not in the journal.
            fix = (f"systemctl unmask {args[-1]}, then re-run" if "masked" in
                   f"{res.stdout} {res.stderr}".lower() else f"see `journalctl -u {args[-1]}` "
                   "for why")
            raise HostIOError(f"systemctl {' '.join(args)} failed: {res.last_line()}", fix)

    def daemon_reload(self) -> None:
        self._ctl("daemon-reload")

    def enable(self, unit: str, now: bool = False, wait: bool = True) -> None:
        """`now` starts it too, in the same call; `wait=False` queues that start (--no-block).

        Without the daemon-reload `systemctl enable` does by itself (a second or so on a busy
        host): the new symlink only matters at the next boot, which loads every unit afresh,
        and systemd answers UnitFileState from disk at once. Unit files install changed are
        reloaded explicitly (ServiceStep's pending daemon-reload).
        """
        self._ctl("enable", "--no-reload", *(["--now"] if now else []), *_no_block(wait), unit)

    def disable(self, unit: str, now: bool = False) -> None:
        self._ctl("disable", *(["--now"] if now else []), unit)

    def start(self, unit: str, wait: bool = True) -> None:
        self._ctl("start", *_no_block(wait), unit)

    def stop(self, unit: str) -> None:
        self._ctl("stop", unit)

    def restart(self, unit: str, wait: bool = True) -> None:
        self._ctl("restart", *_no_block(wait), unit)

    def reset_failed(self, unit: str) -> None:
        self._host.run(["systemctl", "reset-failed", unit], timeout=30)


def _no_block(wait: bool) -> tuple[str, ...]:
    # Without waiting, systemctl returns once the job is queued; whoever needs the unit up
    # must then look for themselves (install's unit-ready steps do).
    return () if wait else ("--no-block",)
