"""Booting and stopping lab hosts: systemd-nspawn in the host's netns and a cgroup of its own."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from anywhere_agent.errors import LabError
from anywhere_agent.lab import system
from anywhere_agent.lab.hosts import LabHost, exec, sshd_answers
from anywhere_agent.lab.system import ProcessRef

BOOT_TIMEOUT = 90.0  # 10 hosts booting at once on 2 cores take a few seconds each
# Each host's /var/lib/docker, bound from a plain directory of the build machine: overlay2
# cannot stack on the host's overlayfs root (dockerd would fall back to the slow vfs driver).
DOCKER_DATA = "docker-data"
CGROUP_PARENT = "anywhere-lab"


def nspawn_argv(host: LabHost) -> list[str]:
    """How a lab host boots. The last three options are what dockerd needs (machine-notes.md):

    - `--capability=all`: dockerd mounts, creates network namespaces and sets up cgroups for
      its containers; nspawn's default capability set lacks CAP_SYS_ADMIN's relatives it uses
      (CAP_NET_ADMIN is there, CAP_SYS_RESOURCE, CAP_MKNOD for device nodes ... are not).
    - `--system-call-filter=@keyring bpf`: runc joins a session keyring per container ("unable
      to join session keyring" without @keyring) and, under cgroup v2, installs the device
      filter as a BPF program ("bpf_prog_query(BPF_CGROUP_DEVICE) failed" without bpf).
    - `--bind=DIR:/var/lib/docker`: a plain ext4 directory, so dockerd can use overlay2.
    The environment of `boot` adds SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 (see there).
    """
    return [
        "systemd-nspawn",
        "--quiet",
        "-D",
        str(host.merged),
        "--boot",
        f"--machine={host.machine}",
        # PID 1 of the build machine is not systemd: no machined, no scope units.
        "--register=no",
        "--keep-unit",
        f"--network-namespace-path=/run/netns/{host.netns}",
        "--resolv-conf=off",
        "--timezone=off",
        "--link-journal=no",
        "--console=passive",
        "--capability=all",
        "--system-call-filter=@keyring bpf",
        f"--bind={host.dir / DOCKER_DATA}:/var/lib/docker",
    ]


def cgroup_dirs(machine: str) -> list[Path]:
    """Per-host cgroups in the hierarchies systemd uses (name=systemd v1, and cgroup2).

    With --keep-unit nspawn stays in its caller's cgroup, so hosts started by one process
    would share one tree and their systemds would create and remove each other's unit
    cgroups ("Failed to attach to cgroup ... No such file or directory"). Each host gets a
    child of the caller's cgroup of its own.
    """
    roots: dict[str, Path] = {}
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fields, tail = pre.split(), post.split()
        if len(fields) < 5 or not tail:
            continue
        if tail[0] == "cgroup2":
            roots.setdefault("", Path(fields[4]))
        elif tail[0] == "cgroup" and "name=systemd" in tail[-1].split(","):
            roots.setdefault("name=systemd", Path(fields[4]))
    out: list[Path] = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        root = roots.get(controllers)
        if root is not None:
            out.append(root / path.lstrip("/") / CGROUP_PARENT / machine)
    return out


def remove_cgroups(dirs: Sequence[Path]) -> list[str]:
    """rmdir each host cgroup bottom-up (the host's systemd made sub-cgroups); returns failures."""
    failed: list[str] = []
    for top in dirs:
        if not top.is_dir():
            continue
        for root, subdirs, _files in os.walk(top, topdown=False):
            for sub in subdirs:
                _rmdir(Path(root) / sub, failed)
        _rmdir(top, failed)
        parent = top.parent
        if parent.name == CGROUP_PARENT:
            try:
                parent.rmdir()  # shared by labs: removed by whichever goes last
            except OSError:
                pass
    return failed


def _rmdir(path: Path, failed: list[str]) -> None:
    try:
        path.rmdir()
    except FileNotFoundError:
        pass
    except OSError as exc:
        failed.append(f"{path}: {exc.strerror}")


def boot(host: LabHost, cgroups: Sequence[Path] = ()) -> ProcessRef:
    """Start nspawn in the background, in its own session and cgroups, output to the host log."""
    argv = nspawn_argv(host)
    (host.dir / DOCKER_DATA).mkdir(mode=0o710, parents=True, exist_ok=True)
    if cgroups:
        # A launcher joins the cgroups first: nspawn forks at once, so moving it after
        # Popen would leave its children behind.
        argv = [sys.executable, "-m", "anywhere_agent.lab.nspawn", *map(str, cgroups), "--", *argv]
    env = {
        **system.HOST_ENV,
        "SYSTEMD_LOG_LEVEL": "warning",
        # The build machine's cgroups are hybrid, and nspawn without a scope unit
        # (--keep-unit) would mount the v1 controllers read-only: dockerd could not
        # make its containers' cgroups. With this the host gets a writable cgroup2
        # subtree of its own and Docker uses cgroup v2 with the systemd driver.
        "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1",
    }
    return system.spawn(argv, host.log, env)


def _launch(args: list[str]) -> int:
    """`python -m anywhere_agent.lab.nspawn CGROUP... -- ARGV`: join the cgroups, exec ARGV."""
    split = args.index("--")
    for cg in args[:split]:
        try:
            os.makedirs(cg, exist_ok=True)
            with open(os.path.join(cg, "cgroup.procs"), "w") as procs:
                procs.write(str(os.getpid()))
        except OSError as exc:
            # Booting in the shared cgroup still works, only with the race described above.
            print(f"anywhere-lab: cannot join cgroup {cg}: {exc}", file=sys.stderr, flush=True)
    argv = args[split + 1 :]
    os.execvp(argv[0], argv)  # noqa: S606 - argv list from our own caller, no shell
    return 127  # pragma: no cover - execvp does not return


def find_nspawn(machine: str) -> list[ProcessRef]:
    """nspawn processes booting this machine name, found from their command lines."""
    found: list[ProcessRef] = []
    flag = f"--machine={machine}"
    for pid in system.iter_pids():
        argv = system.cmdline(pid)
        if argv and os.path.basename(argv[0]) == "systemd-nspawn" and flag in argv:
            st = system.start_time(pid)
            if st is not None:
                found.append(ProcessRef(pid, st))
    return found


def find_leader(nspawn: ProcessRef) -> ProcessRef | None:
    """The container's PID 1: PID 1 of a child pid namespace, descended from this nspawn.

    Looked up rather than assumed (nspawn forks before exec'ing init); /proc/PID/root cannot
    confirm it, since after pivot_root it reads "/" from outside the container's mount ns.
    """
    for pid in system.iter_pids():
        status = system.proc_status(pid)
        nspid = status.get("NSpid", "").split()
        if len(nspid) < 2 or nspid[-1] != "1":
            continue
        if not _descends_from(pid, nspawn.pid):
            continue
        st = system.start_time(pid)
        if st is not None:
            return ProcessRef(pid, st)
    return None


def _descends_from(pid: int, ancestor: int) -> bool:
    for _ in range(16):
        ppid = int(system.proc_status(pid).get("PPid", "0") or 0)
        if ppid == ancestor:
            return True
        if ppid <= 1:
            return False
        pid = ppid
    return False


def wait_leader(host: LabHost, timeout: float = 20.0) -> ProcessRef:
    assert host.nspawn is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leader = find_leader(host.nspawn)
        if leader is not None:
            return leader
        if not host.nspawn.alive():
            raise LabError(
                f"systemd-nspawn for {host.name} exited: {system.log_tail(host.log)}",
                f"read {host.log}",
            )
        time.sleep(0.05)
    raise LabError(f"{host.name}: no container init after {timeout:.0f}s", f"read {host.log}")


def wait_ready(host: LabHost, timeout: float = BOOT_TIMEOUT) -> str:
    """Wait until systemd says running/degraded and sshd sends its banner; returns the state."""
    deadline = time.monotonic() + timeout
    state = "unknown"
    while time.monotonic() < deadline:
        if host.nspawn is not None and not host.nspawn.alive():
            raise LabError(
                f"{host.name} stopped while booting: {system.log_tail(host.log)}",
                f"read {host.log}",
            )
        proc = exec(host, ["systemctl", "is-system-running"], check=False, timeout=10)
        state = proc.stdout.decode().strip() or state
        if state in ("running", "degraded") and sshd_answers(host.ip):
            return state
        time.sleep(0.2)
    raise LabError(
        f"{host.name} not ready after {timeout:.0f}s (systemd: {state})",
        f"read {host.log}; `anywhere-agent lab down` then retry",
    )


def stop(hosts: Sequence[LabHost], grace: float = 15.0) -> list[str]:
    """SIGTERM each nspawn (it halts the container's systemd), SIGKILL after grace."""
    refs: list[ProcessRef] = []
    for host in hosts:
        refs.extend(r for r in (host.nspawn, host.leader) if r is not None and r.alive())
        refs.extend(r for r in find_nspawn(host.machine) if r not in refs)
    # The leader is signalled only if nspawn is gone, so systemd gets the orderly halt first.
    nspawns = [
        r for r in refs if os.path.basename((system.cmdline(r.pid) or [""])[0]) == "systemd-nspawn"
    ]
    orphans = [r for r in refs if r not in nspawns]
    left = system.stop_processes(nspawns, grace=grace)
    # An init whose nspawn died gets systemd's poweroff signal, then SIGKILL (which ends
    # every process of its pid namespace).
    left += system.stop_processes(
        [r for r in orphans if r.alive()], grace=5.0, first=signal.SIGRTMIN + 4
    )
    return [f"pid {r.pid}" for r in left]


if __name__ == "__main__":
    raise SystemExit(_launch(sys.argv[1:]))
