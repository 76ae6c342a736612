"""Benchmark: ansible/playbooks/rollout.yml, 1 lab host vs 10 lab hosts, and what each costs.

Usage: bench_rollout.py RESULTS.jsonl [--rehearsal 30]; appends one JSON line.
One lab of 21 fresh hosts: n1 alone, then n2..n11 in one run (batches [1, "100%"]: a
canary, then the rest; the target's ratio), then n12..n21 in one batch (what the canary
adds), each a full rollout (probe, ensure, one activation, install and
join, gate, revoke). Target: 10 hosts <= 2.5x one host. Also recorded: CPU-seconds per
joined host on the controller (ansible-playbook, its forks and ssh, the registrar) and on
the host (every process in the host's PID namespace), the control plane's CPU, and a
per-task profile of the one-host run (where its time goes) with, from BSD process
accounting inside n1, that node's CPU by command (apt, dpkg, pip, each module's Python,
anywhere-agent). Needs root and
systemd-nspawn; records a skip otherwise.

`--rehearsal N` instead brings up N hosts and rolls out to all of them with the playbook's
default batches: wall time, CPU per host, and each idle host's memory (PSS of every process
in its PID namespace; target <= 15 MiB).

On a machine shared with other work the wall-clock ratio is noisy; CPU-seconds are not.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_record, rollup  # noqa: E402
from tests.ansible.conftest import lab_vars, run_playbook  # noqa: E402
from tests.conftest import lab_skip_reason  # noqa: E402

TARGET_RATIO = 2.5
LAB = "aaansb"
BATCHES = [1, "100%"]
TICK = os.sysconf("SC_CLK_TCK")

# An ansible callback (ansible-core ships no task profiler): each host's time per task.
PROFILER = '''
import json, os, time
from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "anywhere_bench_profile"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self.started, self.rows = {}, []

    def v2_runner_on_start(self, host, task):
        self.started[(host.get_name(), task._uuid)] = time.perf_counter()

    def _done(self, result, status):
        task = result._task
        t0 = self.started.pop((result._host.get_name(), task._uuid), None)
        if t0 is not None:
            self.rows.append({"task": task.get_name(), "action": task.action, "status": status,
                              "host": result._host.get_name(), "s": time.perf_counter() - t0,
                              "controller": bool(task.delegate_to) or task.action in LOCAL})

    def v2_runner_on_ok(self, result):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result):
        self._done(result, "skipped")

    def v2_runner_on_unreachable(self, result):
        self._done(result, "unreachable")

    def v2_playbook_on_stats(self, stats):
        with open(os.environ["ANYWHERE_BENCH_PROFILE"], "w") as out:
            json.dump(self.rows, out)


LOCAL = {"ansible.builtin.set_fact", "ansible.builtin.assert", "ansible.builtin.fail",
         "ansible.builtin.debug", "ansible.builtin.meta", "ansible.builtin.include_role",
         "ansible.builtin.import_role", "set_fact", "assert", "fail", "debug", "meta",
         "include_role"}
'''


def ns_cpu(leaders: list[Any]) -> float:
    """CPU-seconds so far of every process in these hosts' PID namespaces (`leaders`: their
    ProcessRefs): own time plus the time of children they reaped (so processes that already
    exited count too)."""
    from anywhere_agent.lab.hosts import container_pids

    total = 0
    for pid in (pid for leader in leaders for pid in container_pids(leader)):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return total / TICK


def pid_cpu(pid: int | None) -> float:
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def ns_pss_mib(leader: Any) -> float:
    """Proportional set size of every process in one host's PID namespace (shared pages,
    e.g. the read-only base image's libraries, split among the hosts that map them)."""
    from anywhere_agent.lab.hosts import container_pids

    total = 0
    for pid in container_pids(leader):
        try:
            total += rollup(pid).get("Pss", 0)
        except OSError:
            continue
    return total / 1024


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


ACCT_FILE = "/var/log/anywhere-bench.acct"
# acct(2) from inside the host: BSD process accounting is kept per PID namespace, so the file
# lists the processes of this host only, each with its CPU when it exited.
ACCT_SWITCH = "import ctypes, sys; lib = ctypes.CDLL(None, use_errno=True); " \
              "arg = sys.argv[1].encode() if len(sys.argv) > 1 else None; " \
              "sys.exit(0 if lib.acct(arg) == 0 else ctypes.get_errno())"


def acct(lab: Any, host: str, on: bool) -> bool:
    """Switch process accounting in `host` on (a fresh file) or off; False if the kernel
    has none (CONFIG_BSD_PROCESS_ACCT)."""
    argv = ["python3", "-c", ACCT_SWITCH] + ([ACCT_FILE] if on else [])
    if on:
        lab.exec(host, ["sh", "-c", f": > {ACCT_FILE}"], check=False)
    return lab.exec(host, argv, check=False).returncode == 0


def _comp_t(v: int) -> float:
    """acct's comp_t: 13-bit mantissa, 3-bit base-8 exponent, in ticks of AHZ (100)."""
    return ((v & 0x1FFF) << (3 * ((v >> 13) & 7))) / 100.0


def node_cpu_by_command(leader: int) -> dict[str, Any]:
    """CPU-seconds of the host's exited processes by command name (acct v3 records), the
    commands that ran longest first: where a node's rollout CPU goes (apt, dpkg, pip, the
    Python of each Ansible module, anywhere-agent, the agents' packages' scripts). Daemons
    still running (the agents, the supervisor, systemd) are not in it."""
    import struct

    data = Path(f"/proc/{leader}/root{ACCT_FILE}").read_bytes()
    by: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for i in range(0, len(data) - 63, 64):
        rec = data[i:i + 64]
        if rec[1] != 3:  # ac_version
            continue
        utime, stime = struct.unpack_from("<HH", rec, 32)
        comm = rec[48:64].split(b"\0")[0].decode(errors="replace")
        by[comm][0] += 1
        by[comm][1] += _comp_t(utime) + _comp_t(stime)
    top = sorted(by.items(), key=lambda kv: -kv[1][1])
    return {"total_cpu_s": round(sum(v[1] for v in by.values()), 2),
            "processes": int(sum(v[0] for v in by.values())),
            "by_command": {k: {"n": int(v[0]), "cpu_s": round(v[1], 2)}
                           for k, v in top[:15] if v[1] >= 0.01}}


def profile(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The one-host run by task: seconds, and how many tasks ran on the node over ssh."""
    by_task: defaultdict[str, float] = defaultdict(float)
    remote = controller = skipped = 0
    for r in rows:
        by_task[r["task"]] += r["s"]
        if r["status"] == "skipped":
            skipped += 1
        elif r["controller"]:
            controller += 1
        else:
            remote += 1
    top = sorted(by_task.items(), key=lambda kv: -kv[1])[:12]
    return {"tasks_on_node": remote, "tasks_on_controller": controller,
            "tasks_skipped": skipped, "task_seconds": round(sum(by_task.values()), 2),
            "slowest": {name: round(s, 2) for name, s in top}}


def timed_rollout(lab: Any, inventory: Path, extra: dict[str, Any], hosts: list[str],
                  tmp: str, plugins: Path, account: str | None = None) -> dict[str, Any]:
    leaders = [h.leader for h in lab.hosts() if h.name in hosts and h.leader]
    accounting = bool(account) and acct(lab, str(account), True)
    plane = (lab._state().data.get("processes") or {}).get("control-plane", {}).get("pid")
    report = Path(tmp) / "profile.json"
    before = (children_cpu(), ns_cpu(leaders), pid_cpu(plane))
    start = time.perf_counter()
    run = run_playbook("rollout.yml", inventory, extra, "--limit", ",".join(hosts),
                       env={"TMPDIR": tmp, "ANSIBLE_CALLBACK_PLUGINS": str(plugins),
                            "ANSIBLE_CALLBACKS_ENABLED": "anywhere_bench_profile",
                            "ANYWHERE_BENCH_PROFILE": str(report)}, timeout=1800)
    seconds = time.perf_counter() - start
    if run.rc != 0:
        raise SystemExit(f"rollout of {hosts} failed:\n{run.output[-3000:]}")
    n = len(hosts)
    by_command = None
    if accounting:
        acct(lab, str(account), False)
        leader = lab.host(str(account)).leader
        by_command = node_cpu_by_command(leader.pid) if leader else None
    return {"s": seconds, **({"node_cpu_by_command": by_command} if by_command else {}),
            "controller_cpu_s_per_host": round((children_cpu() - before[0]) / n, 2),
            "host_cpu_s_per_host": round((ns_cpu(leaders) - before[1]) / n, 2),
            "control_plane_cpu_s_per_host": round((pid_cpu(plane) - before[2]) / n, 2),
            "profile": profile(json.loads(report.read_text()))}


def floor() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - start


def rollout_setup(lab: Any, tmp: str) -> tuple[Path, Path, dict[str, Any]]:
    """Under `tmp`: the profiling callback plugin's directory, the lab's inventory, and the
    rollout's extra vars (the controller's registrar as an IAM user, as an operator runs it)."""
    plugins = Path(tmp) / "callback_plugins"
    plugins.mkdir()
    (plugins / "anywhere_bench_profile.py").write_text(PROFILER)
    inventory = Path(tmp) / "hosts.ini"
    inventory.write_text(lab.inventory())
    from anywhere_agent.lab.operators import create_operator

    url = lab.control_plane_url()
    controller = create_operator(url, "registrar", lab.region).environment()
    group = lab.name.replace("-", "_")  # the inventory's group (suffix included)
    return plugins, inventory, lab_vars(url, lab.region, lab.product_wheel(), group, controller)


def rehearsal(results: Path, hosts: int) -> int:
    """`lab up --hosts N` and one rollout.yml of all of them with the default batches: wall
    time, CPU per host, and each idle joined host's memory."""
    from anywhere_agent.lab.orchestrator import Lab

    record: dict[str, Any] = {"bench": f"ansible_rollout_rehearsal_{hosts}_hosts",
                              "time": time.time(), "load_avg_1m": os.getloadavg()[0],
                              "target_idle_host_mib": 15}
    lab = Lab(LAB)
    started = time.perf_counter()
    try:
        lab.up(hosts)
        record["lab_up_s"] = round(time.perf_counter() - started, 1)
        with tempfile.TemporaryDirectory() as tmp:
            plugins, inventory, extra = rollout_setup(lab, tmp)
            extra.pop("rollout_batches", None)
            run = timed_rollout(lab, inventory, extra, [f"n{i}" for i in range(1, hosts + 1)],
                                tmp, plugins)
            time.sleep(30)  # idle: agents and supervisors settled into their intervals
            pss = [ns_pss_mib(h.leader) for h in lab.hosts() if h.leader]
    finally:
        lab.down()
    record.update(rollout_s=round(run["s"], 1),
                  controller_cpu_s_per_host=run["controller_cpu_s_per_host"],
                  host_cpu_s_per_host=run["host_cpu_s_per_host"],
                  control_plane_cpu_s_per_host=run["control_plane_cpu_s_per_host"],
                  idle_host_pss_mib=round(sum(pss) / len(pss), 1) if pss else None,
                  idle_host_pss_mib_max=round(max(pss), 1) if pss else None,
                  load_avg_1m_after=os.getloadavg()[0])
    record["ok"] = bool(pss) and record["idle_host_pss_mib"] <= 15
    append_record(results, record)
    return 0


def main() -> int:
    results = Path(sys.argv[1])
    if len(sys.argv) == 4 and sys.argv[2] == "--rehearsal":
        return rehearsal(results, int(sys.argv[3]))
    record: dict[str, Any] = {"bench": "ansible_rollout_1_vs_10_hosts",
                              "target_ratio": TARGET_RATIO, "batches": BATCHES,
                              "time": time.time(), "load_avg_1m": os.getloadavg()[0]}
    reason = lab_skip_reason()
    if reason:
        record.update(skipped=reason, ok=None)
    else:
        from anywhere_agent.lab.orchestrator import Lab

        lab = Lab(LAB)
        try:
            lab.up(21)
            with tempfile.TemporaryDirectory() as tmp:
                plugins, inventory, extra = rollout_setup(lab, tmp)
                extra["rollout_batches"] = BATCHES
                one = timed_rollout(lab, inventory, extra, ["n1"], tmp, plugins,
                                    account="n1")
                ten = timed_rollout(lab, inventory, extra, [f"n{i}" for i in range(2, 12)],
                                    tmp, plugins)
                # Also without the canary: what the first batch of one host adds to any rollout.
                extra["rollout_batches"] = ["100%"]
                flat = timed_rollout(lab, inventory, extra, [f"n{i}" for i in range(12, 22)],
                                     tmp, plugins)
        finally:
            lab.down()
        record["ten_hosts_one_batch"] = {"s": round(flat["s"], 2),
                                         "ratio": round(flat["s"] / one["s"], 2),
                                         **{k: v for k, v in flat.items()
                                            if k not in ("s", "profile")}}
        ratio = ten["s"] / one["s"]
        record.update(one_host_s=round(one["s"], 2), ten_hosts_s=round(ten["s"], 2),
                      ratio=round(ratio, 2), ok=ratio <= TARGET_RATIO,
                      one_host={k: v for k, v in one.items() if k != "s"},
                      ten_hosts={k: v for k, v in ten.items() if k not in ("s", "profile")},
                      ten_hosts_tasks={k: v for k, v in ten["profile"].items()
                                       if k.startswith("tasks")},
                      python_c_pass_ms=round(floor() * 1000, 2),
                      load_avg_1m_after=os.getloadavg()[0])
    append_record(results, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
