"""Benchmark: ansible/playbooks/rollout.yml wall time, 1 lab host vs 10 lab hosts.

Usage: bench_rollout.py RESULTS.jsonl; appends one JSON line. One lab of 11 fresh hosts:
n1 alone, then n2..n11 in one run (batches [1, "100%"]: a canary, then the rest), each a
full rollout (probe, ensure, one activation, install and join, gate, revoke). Target:
10 hosts <= 2.5x one host. Needs root and systemd-nspawn; records a skip otherwise.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.ansible.conftest import lab_skip_reason, lab_vars, run_playbook  # noqa: E402

TARGET_RATIO = 2.5
LAB = "aaansb"
BATCHES = [1, "100%"]


def timed_rollout(inventory: Path, extra: dict, limit: str, tmp: str) -> float:
    start = time.perf_counter()
    run = run_playbook("rollout.yml", inventory, extra, "--limit", limit,
                       env={"TMPDIR": tmp}, timeout=1800)
    seconds = time.perf_counter() - start
    if run.rc != 0:
        raise SystemExit(f"rollout of {limit} failed:\n{run.output[-3000:]}")
    return seconds


def floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def main() -> int:
    results = Path(sys.argv[1])
    record: dict = {"bench": "ansible_rollout_1_vs_10_hosts", "target_ratio": TARGET_RATIO,
                    "batches": BATCHES, "time": time.time()}
    reason = lab_skip_reason()
    if reason:
        record.update(skipped=reason, ok=None)
    else:
        from anywhere_agent.lab.orchestrator import Lab

        lab = Lab(LAB)
        lab.up(11)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                inventory = Path(tmp) / "hosts.ini"
                inventory.write_text(lab.inventory())
                from anywhere_agent.lab.operators import create_operator

                url = lab.control_plane_url()
                controller = create_operator(url, "registrar", lab.region).environment()
                extra = {**lab_vars(url, lab.region, lab.product_wheel(), LAB, controller),
                         "rollout_batches": BATCHES}
                one = timed_rollout(inventory, extra, "n1", tmp)
                ten = timed_rollout(inventory, extra, ",".join(f"n{i}" for i in range(2, 12)),
                                    tmp)
        finally:
            lab.down()
        record.update(one_host_s=round(one, 2), ten_hosts_s=round(ten, 2),
                      ratio=round(ten / one, 2), ok=ten / one <= TARGET_RATIO,
                      python_c_pass_ms=round(floor() * 1000, 2))
    with results.open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
