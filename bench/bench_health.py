"""Benchmark: `anywhere-agent health --format nagios` cold start vs `python3 -c pass`.

Usage: bench_health.py RESULTS.jsonl [RUNS]; appends one JSON line. Both commands run
interleaved in the same process tree, so machine load affects them alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_record  # noqa: E402

TARGET_RATIO = 8.0


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                   check=False)
    return time.perf_counter() - start


def main() -> int:
    results = Path(sys.argv[1])
    runs = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    from anywhere_agent.health.model import Check, HostHealth, Status
    from anywhere_agent.health.state import state_bytes

    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "health.json"
        checks = [Check(f"check_{i}", Status.OK, "fine", value=float(i), uom="%")
                  for i in range(12)]
        state.write_bytes(state_bytes(HostHealth.build(checks, time.time() + 3600)))
        config = Path(tmp) / "agent.toml"
        config.write_text(f'[health]\nstate_file = "{state}"\n')
        script = Path(sys.executable).with_name("anywhere-agent")
        cmd = ([str(script)] if script.exists() else [sys.executable, "-m", "anywhere_agent"])
        cmd += ["health", "--format", "nagios", "--config", str(config)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        floor_cmd = [sys.executable, "-c", "pass"]
        for _ in range(3):  # warm the page cache and .pyc files
            timed(cmd, env)
            timed(floor_cmd, env)
        health_times, floor_times = [], []
        for _ in range(runs):
            health_times.append(timed(cmd, env))
            floor_times.append(timed(floor_cmd, env))
    health_median = statistics.median(health_times)
    floor_median = statistics.median(floor_times)
    ratio = health_median / floor_median
    record = {
        "bench": "health_nagios_cold_start",
        "runs": runs,
        "health_median_ms": round(health_median * 1000, 2),
        "python_c_pass_median_ms": round(floor_median * 1000, 2),
        "ratio": round(ratio, 2),
        "target_ratio": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
        "command": " ".join(cmd[:1] + cmd[1:4]),
        "time": time.time(),
    }
    append_record(results, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
