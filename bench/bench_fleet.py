"""Time `registrar fleet --all-clusters --region a,b --json` on 5,000 and 20,000 seeded hosts
in 5 clusters and 2 regions: wall time, calls against the pagination minimum, CPU and peak
RSS of the command; append one JSON line per size to argv[1]."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from anywhere_agent.lab.control_plane.admin import LabAdmin, LabAdminError
from anywhere_agent.lab.operators import create_operator

SIZES = (5000, 20000)
RUNS = 3
TARGET_S = 20.0  # for 20,000 hosts
# Five clusters in two regions (an ECS cluster holds at most 5,000 container instances).
LAYOUT = (("us-east-1", "dc1-a"), ("us-east-1", "dc1-b"), ("us-east-1", "dc1-c"),
          ("eu-west-1", "dc2-a"), ("eu-west-1", "dc2-b"))
REGIONS = ("us-east-1", "eu-west-1")
# The command exactly as a user runs it (a fresh interpreter: imports and client setup count).
COMMAND = [sys.executable, "-c", "from anywhere_agent.cli.registrar import app; app()",
           "fleet", "--all-clusters", "--region", ",".join(REGIONS), "--json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float, bytes, int]:
    """(wall s, CPU s, peak RSS MiB, stdout, exit code) of one child. This process stays
    small (the control plane runs in its own), so the child's ru_maxrss is its own peak:
    Linux keeps the larger of the parent's RSS at fork and the child's own."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return (wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out,
            proc.returncode)


def minimum(hosts: int) -> dict[str, int]:
    per_cluster = hosts // len(LAYOUT)
    per_region = {r: per_cluster * sum(1 for reg, _ in LAYOUT if reg == r) for r in REGIONS}
    return {
        "DescribeInstanceInformation": sum(math.ceil(n / 50) for n in per_region.values()),
        "ListContainerInstances": len(LAYOUT) * math.ceil(per_cluster / 100),
        "DescribeContainerInstances": len(LAYOUT) * math.ceil(per_cluster / 100),
        "ListClusters": len(REGIONS),
    }


def measure(admin: LabAdmin, plane_pid: int, hosts: int, env: dict[str, str]) -> dict[str, object]:
    admin.reset()  # which also removes IAM users: the operator is made afterwards
    env = {**env, **create_operator(admin.base_url, "registrar").environment()}
    for region, cluster in LAYOUT:
        admin.seed(hosts // len(LAYOUT), cluster=cluster, region=region, name_prefix=cluster)
    runs = []
    for _ in range(RUNS):
        admin.reset_calls()
        plane_cpu = cpu_seconds(plane_pid)
        wall, cpu, rss, out, code = timed(COMMAND, env)
        plane_cpu = cpu_seconds(plane_pid) - plane_cpu
        if code != 0:
            raise SystemExit(f"fleet exited {code}: {out.decode(errors='replace')[-2000:]}")
        seen = json.loads(out)["summary"]["hosts"]
        if seen != hosts:
            raise SystemExit(f"fleet saw {seen} hosts, expected {hosts}")
        counted = admin.calls()
        calls = {op: counted.count(svc, op) for svc, op in (
            ("ssm", "DescribeInstanceInformation"), ("ecs", "ListContainerInstances"),
            ("ecs", "DescribeContainerInstances"), ("ecs", "ListClusters"))}
        total = counted.count("ssm") + counted.count("ecs")
        runs.append((wall, cpu, rss, plane_cpu, calls, total))
    want = minimum(hosts)
    median = statistics.median(r[0] for r in runs)
    return {
        "bench": "registrar_fleet_json",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hosts": hosts, "clusters": len(LAYOUT), "regions": len(REGIONS),
        "runs_s": [round(r[0], 3) for r in runs],
        "median_s": round(median, 3),
        "target_s": TARGET_S,
        "within_target": median <= TARGET_S,
        "command_cpu_s": round(statistics.median(r[1] for r in runs), 2),
        "control_plane_cpu_s": round(statistics.median(r[3] for r in runs), 2),
        "peak_rss_mib": round(max(r[2] for r in runs), 1),
        "calls": runs[-1][4],
        "calls_total": runs[-1][5],
        "pagination_minimum": want,
        "at_minimum": all(r[4] == want and r[5] == sum(want.values()) for r in runs),
    }


def main(results_file: str) -> int:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as home:
        plane = subprocess.Popen(
            [sys.executable, "-m", "anywhere_agent.lab.control_plane", "--port", str(port),
             "--log-level", "WARNING", "--pid-file", os.path.join(home, "plane.pid")],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not os.path.exists(os.path.join(home, "plane.pid")):
                if plane.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the control plane did not start")
                time.sleep(0.1)
            admin = LabAdmin(url, timeout=300)
            env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_REGION": REGIONS[0],
                   "AWS_CONFIG_FILE": os.path.join(home, "config"),
                   "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials")}
            env.pop("AWS_PROFILE", None)
            records = [measure(admin, plane.pid, n, env) for n in SIZES]
        except LabAdminError as err:
            raise SystemExit(str(err)) from None
        finally:
            plane.send_signal(signal.SIGTERM)
            plane.wait(timeout=30)
    small, big = records
    big["peak_rss_mib_at"] = {str(small["hosts"]): small["peak_rss_mib"],
                              str(big["hosts"]): big["peak_rss_mib"]}
    with open(results_file, "a", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, sort_keys=True) + "\n")
            print(json.dumps(record, sort_keys=True))
    ok = big["within_target"] and all(r["at_minimum"] for r in records)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_fleet.py RESULTS_FILE")
    sys.exit(main(sys.argv[1]))
