"""Benchmark: the memory of an idle, joined lab host, per host and per process.

Usage: bench_idle_memory.py RESULTS.jsonl [HOSTS]; appends one JSON line.
Brings up HOSTS lab hosts (default 2), installs the product on each and joins it (as the
rollout does, `docker_source = none`), idles 30 s, then records each host's PSS (every
process in its PID namespace, as bench_rollout's rehearsal does; target <= 15 MiB), its USS
(pages no other process maps: unlike PSS, independent of how many other hosts or labs share
the base image's libraries at the time) and, per process of the first host, PSS, USS,
private dirty and threads. The floor it is measured against: a bare
`python3 -c 'import time; time.sleep(99)'` started in the same host.
Needs root and systemd-nspawn; records a skip otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_record, rollup  # noqa: E402
from tests.conftest import lab_skip_reason  # noqa: E402

LAB = "aamem"
CLUSTER = "mem"
IDLE_S = 30
TARGET_MIB = 15


def processes(leader: Any) -> list[dict[str, Any]]:
    """Every process in the PID namespace of `leader` (a ProcessRef): command, PSS, private
    dirty, threads."""
    from anywhere_agent.lab.hosts import container_pids

    rows = []
    for pid in container_pids(leader):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            mem = rollup(pid)
            threads = len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
        if not cmd.strip():
            continue  # a kernel-side zombie or a process that just exited
        rows.append({"cmd": cmd.strip()[:80], "pss_kib": mem.get("Pss", 0),
                     "uss_kib": mem.get("Private_Clean", 0) + mem.get("Private_Dirty", 0),
                     "private_dirty_kib": mem.get("Private_Dirty", 0), "threads": threads})
    return sorted(rows, key=lambda r: -r["pss_kib"])


def floor_python(lab: Any, host: str) -> dict[str, int]:
    """A bare sleeping python3 in the host: what any Python daemon costs before its own code."""
    proc = subprocess.Popen(["nsenter", "-t", str(lab.host(host).leader.pid), "-a",
                             "python3", "-c", "import time; time.sleep(99)"])
    try:
        time.sleep(2)
        for row in processes(lab.host(host).leader):
            if row["cmd"].startswith("python3 -c import time"):
                return {k: v for k, v in row.items() if k != "cmd"}
        return {}
    finally:
        proc.terminate()
        proc.wait(10)


def measure(hosts: int) -> dict[str, Any]:
    from anywhere_agent.lab import rollout
    from anywhere_agent.lab.orchestrator import Lab

    names = [f"n{i}" for i in range(1, hosts + 1)]
    lab = Lab(LAB)
    try:
        lab.up(hosts)
        rollout.stage(lab, names, CLUSTER, {n: "none" for n in names})
        activation = rollout.prepare(lab.control_plane_url(), lab.region, CLUSTER, hosts)
        for name in names:
            code, _, err = rollout.install(lab, name, activation)
            if code != 0:
                raise SystemExit(f"install on {name} exited {code}: {err[-2000:]}")
        time.sleep(IDLE_S)
        per_host = {h.name: processes(h.leader) for h in lab.hosts() if h.leader}
        floor = floor_python(lab, names[0])
    finally:
        lab.down()
    pss = {name: round(sum(r["pss_kib"] for r in rows) / 1024, 1)
           for name, rows in per_host.items()}
    uss = {name: round(sum(r["uss_kib"] for r in rows) / 1024, 1)
           for name, rows in per_host.items()}
    return {"idle_host_pss_mib": round(sum(pss.values()) / len(pss), 1),
            "idle_host_uss_mib": round(sum(uss.values()) / len(uss), 1),
            "pss_mib_per_host": pss, "processes_of_n1": per_host[names[0]],
            "floor_python3_sleep": floor}


def main() -> int:
    results = Path(sys.argv[1])
    hosts = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    record: dict[str, Any] = {"bench": f"idle_host_memory_{hosts}_hosts", "time": time.time(),
                              "target_idle_host_mib": TARGET_MIB, "idle_s": IDLE_S}
    reason = lab_skip_reason()
    if reason:
        record.update(skipped=reason, ok=None)
    else:
        record.update(measure(hosts))
        record["ok"] = record["idle_host_pss_mib"] <= TARGET_MIB
    append_record(results, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
