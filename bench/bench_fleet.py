"""Time `registrar fleet --json` on 5,000 simulated hosts; append a JSON line to argv[1]."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone

from anywhere_agent.lab.control_plane.admin import LabAdmin
from anywhere_agent.lab.control_plane.server import ControlPlane
from anywhere_agent.lab.operators import create_operator

HOSTS = 5000
RUNS = 3
TARGET_S = 20.0
# The command exactly as a user runs it (a fresh interpreter: imports and client setup count).
COMMAND = [sys.executable, "-c", "from anywhere_agent.cli.registrar import app; app()",
           "fleet", "--cluster", "bench", "--json"]


def main(results_file: str) -> int:
    with ControlPlane(host="127.0.0.1", port=0) as plane, \
            tempfile.TemporaryDirectory() as home:
        admin = LabAdmin(plane.url)
        admin.seed(HOSTS, cluster="bench")
        env = {**os.environ, "AWS_ENDPOINT_URL": plane.url, "AWS_REGION": plane.region,
               **create_operator(plane.url, "registrar").environment(),
               "AWS_CONFIG_FILE": os.path.join(home, "config"),
               "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "credentials")}
        env.pop("AWS_PROFILE", None)
        times, calls = [], {}
        for _ in range(RUNS):
            admin.reset_calls()
            started = time.perf_counter()
            done = subprocess.run(COMMAND, env=env, capture_output=True, text=True, check=False)
            times.append(time.perf_counter() - started)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return done.returncode
            hosts = json.loads(done.stdout)["summary"]["hosts"]
            if hosts != HOSTS:
                print(f"fleet saw {hosts} hosts, expected {HOSTS}", file=sys.stderr)
                return 1
            counted = admin.calls()
            calls = {op: counted.count(svc, op) for svc, op in (
                ("ssm", "DescribeInstanceInformation"), ("ecs", "ListContainerInstances"),
                ("ecs", "DescribeContainerInstances"), ("ecs", "DescribeClusters"))}
    minimum = {"DescribeInstanceInformation": math.ceil(HOSTS / 50),
               "ListContainerInstances": math.ceil(HOSTS / 100),
               "DescribeContainerInstances": math.ceil(HOSTS / 100)}
    median = statistics.median(times)
    record = {
        "bench": "registrar_fleet_json",
        "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "hosts": HOSTS,
        "runs_s": [round(t, 3) for t in times],
        "median_s": round(median, 3),
        "target_s": TARGET_S,
        "within_target": median <= TARGET_S,
        "calls": calls,
        "pagination_minimum": minimum,
        "at_minimum": all(calls[k] == v for k, v in minimum.items()),
    }
    with open(results_file, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
    print(json.dumps(record, sort_keys=True))
    return 0 if record["within_target"] and record["at_minimum"] else 1


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: bench_fleet.py RESULTS_FILE")
    sys.exit(main(sys.argv[1]))
