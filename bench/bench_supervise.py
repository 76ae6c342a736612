"""Benchmark the supervisor: steady-state RSS and CPU share, RSS growth over 10,000 rounds.

Usage: bench_supervise.py RESULTS.jsonl [SECONDS]; appends JSON lines.
1. The real `anywhere-agent supervise` (AWS reporting off, default 15 s interval) runs for
   SECONDS (default 60) against this machine; its RSS and CPU (itself plus waited children,
   i.e. systemctl) are read from /proc, beside a `python3 -c` process idling as the floor.
2. In-process, 10,000 rounds of every probe on a fast fake clock and a fake systemd runner
   under a temp root; RSS before and after (after 1,000 warm-up rounds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_record  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / TICKS


def steady_state(seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "agent.toml"
        config.write_text(f'cluster = "bench"\ndocker_source = "none"\n'
                          f'[health]\nstate_file = "{tmp}/health.json"\n')
        # The argparse door of the command module (what entry.py should dispatch to), not
        # the console script: the measurement is the supervisor's, not cli/main.py's.
        cmd = [sys.executable, "-c", "import sys; from anywhere_agent.cli.supervise import "
               "main; raise SystemExit(main(sys.argv[1:]))"]
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET",
                                                                 "INVOCATION_ID")}
        env["PYTHONPATH"] = str(REPO)
        proc = subprocess.Popen([*cmd, "--config", str(config)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        floor = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                                 env=env)
        try:
            time.sleep(5)  # first round done, imports settled
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            peak = 0
            while time.monotonic() - t0 < seconds:
                time.sleep(1)
                peak = max(peak, rss_bytes(proc.pid))
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            floor_rss = rss_bytes(floor.pid)
            alive = proc.poll() is None
        finally:
            proc.terminate()
            floor.terminate()
            proc.wait(30)
            floor.wait(30)
    share = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    return {
        "bench": "supervise_steady_state",
        "seconds": round(t1 - t0, 1),
        "interval_seconds": 15.0,
        "rss_mib": round(peak / MIB, 2),
        "python_c_floor_rss_mib": round(floor_rss / MIB, 2),
        "rss_ratio": round(peak / floor_rss, 2) if floor_rss else None,
        "target_rss_mib": 30,
        "cpu_percent_of_core": round(share, 3),
        "target_cpu_percent": 0.5,
        "ok": alive and peak <= 30 * MIB and share <= 0.5,
    }


def fast_rounds(rounds: int) -> dict[str, Any]:
    import logging

    # State changes are logged; without a handler logging's last resort prints each one.
    logging.getLogger().addHandler(logging.NullHandler())
    from anywhere_agent.config import Config, HealthConfig
    from anywhere_agent.host.gateway import Host, Result
    from anywhere_agent.supervise.daemon import Supervisor
    from anywhere_agent.supervise.probes import (
        CredentialsProbe,
        IntrospectionProbe,
        PressureProbe,
        RegistrationProbe,
        UnitProbe,
    )

    class Clock:
        mono, wall = 0.0, time.time()

        def monotonic(self) -> float:
            return self.mono

        def time(self) -> float:
            return self.wall

    def runner(argv: Sequence[str], *, input: Optional[bytes] = None,
               env: Optional[Mapping[str, str]] = None,
               timeout: Optional[float] = None) -> Result:
        if argv[:2] == ["systemctl", "show"]:
            return Result(tuple(argv), 0, "LoadState=loaded\nActiveState=active\n"
                          "SubState=running\nNRestarts=0\n")
        return Result(tuple(argv), 0)

    calls = {"n": 0}

    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        calls["n"] += 1
        if calls["n"] % 7 == 0:  # a hung answer now and then exercises escalation/remedy
            raise TimeoutError("timed out")
        return 200, b'{"Cluster": "bench", "ContainerInstanceArn": "arn:x/bench/1"}'

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reg = root / "var/lib/amazon/ssm/registration"
        reg.parent.mkdir(parents=True)
        reg.write_text('{"ManagedInstanceID": "mi-0123456789abcdef0", "Region": "us-east-1"}')
        creds = root / "root/.aws/credentials"
        creds.parent.mkdir(parents=True)
        creds.write_text("[default]\n")
        config = Config(cluster="bench", docker_source="none",
                        health=HealthConfig(state_file="/health.json",
                                            textfile_path="/metrics.prom"))
        host = Host(root, runner=runner)
        clock = Clock()
        every = config.supervise.interval_seconds
        probes = [UnitProbe(host, "ecs", every), UnitProbe(host, "amazon-ssm-agent", every),
                  UnitProbe(host, "docker", every, managed=False, unmanaged_reason="none"),
                  IntrospectionProbe("http://127.0.0.1:51678", "bench", every, fetch=fetch),
                  RegistrationProbe(host, every), CredentialsProbe(host, clock, every),
                  PressureProbe(host, config, every)]
        sup = Supervisor(config, host, clock=clock, probes=probes)

        def run(n: int) -> None:
            for _ in range(n):
                sup.step()
                clock.mono += every
                clock.wall += every
                os.utime(creds, (clock.wall, clock.wall))

        run(1000)
        before = rss_bytes(os.getpid())
        started = time.perf_counter()
        run(rounds)
        elapsed = time.perf_counter() - started
        after = rss_bytes(os.getpid())
    growth = after - before
    return {
        "bench": "supervise_rss_growth_fast_clock",
        "rounds": rounds,
        "rss_before_mib": round(before / MIB, 2),
        "rss_after_mib": round(after / MIB, 2),
        "growth_kib": round(growth / 1024, 1),
        "target_growth_kib": 1024,
        "ms_per_round": round(1000 * elapsed / rounds, 3),
        "ok": growth < MIB,
    }


def main() -> int:
    results = Path(sys.argv[1])
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    for record in (steady_state(seconds), fast_rounds(10_000)):
        record["time"] = time.time()
        append_record(results, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
