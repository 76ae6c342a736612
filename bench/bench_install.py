"""Benchmark: `anywhere-agent install` on fresh lab hosts, to joined and to exit, and its re-run;
side by side with AWS's ecs-anywhere-install.sh when ANYWHERE_OFFICIAL_SCRIPT names a copy; the
parts measured one by one (Python start-up, imports, preflight, apt, dpkg, service starts, the
wait for the join); Docker from the distribution against none; the lab's apt cache hit rate.

Usage: bench_install.py RESULTS.jsonl; appends one JSON line per figure. Every figure sits
beside `python3 -c pass` run on a lab host in the same run. "Joined" is what the control plane
says (SSM PingStatus Online, container instance ACTIVE, agentConnected), polled from outside
the host while the installer runs, the way `registrar wait` would see it.

Side by side: ours and the script alternate on identical fresh hosts (same image, same lab).
The script runs unchanged but for its download base (S3_URL, the one line that names AWS's S3)
pointed at the lab's S3 layout, with `--skip-gpg-check` and `--docker-install-source none`,
`--ecs-endpoint` at the lab, and the SSM agent's endpoint file written first (the script has
no flag for it; ours writes it itself, inside the timed run). The script is never committed.

ANYWHERE_BENCH_INSTALL_RUNS (default 3) fresh hosts per installer; ANYWHERE_BENCH_DOCKER=0
skips the Docker figure (about a minute). Needs root and the lab; prints a skip record otherwise.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.record import append_record  # noqa: E402

TARGETS = {"install_to_joined": 15.0, "rerun_joined": 2.0, "install_to_joined_docker": 60.0,
           "ratio_to_official": 1.0, "exit_after_joined": 0.5}
CLUSTER = "bench"
SCRIPT_ENV = "ANYWHERE_OFFICIAL_SCRIPT"
# The one line of the script that names AWS's S3; the bench points it at the lab's layout.
S3_LINE = re.compile(r'^S3_URL="https://s3\..*"$', re.MULTILINE)
EXEC_VERSION = re.compile(r'^\s*BINARY_VERSION="([^"]+)"', re.MULTILINE)


def main() -> int:
    results = Path(sys.argv[1])
    if os.geteuid() != 0:
        append_record(results, {"bench": "install", "skipped": "needs root (the lab)"})
        return 0
    from anywhere_agent.lab.orchestrator import Lab

    runs = max(1, int(os.environ.get("ANYWHERE_BENCH_INSTALL_RUNS", "3")))
    docker = os.environ.get("ANYWHERE_BENCH_DOCKER", "1") != "0"
    script, why_not = _official_script()
    # n1 measures the parts, n2 Docker, then one fresh host per run and installer.
    count = 1 + int(docker) + runs * (2 if script else 1)
    lab = Lab(name="aabench")
    lab.up(count)
    try:
        if script:
            why_not = _lab_serves_exec_tarball(lab, script)
            if why_not:
                script = None
        records = _bench(lab, runs, docker, script, why_not)
    finally:
        lab.down()
    for record in records:
        append_record(results, record)
    return 0


def _official_script() -> tuple[str | None, str]:
    path = os.environ.get(SCRIPT_ENV, "")
    if not path:
        return None, (f"{SCRIPT_ENV} is not set: point it at a copy of aws/amazon-ecs-agent's "
                      "scripts/ecs-anywhere-install.sh (outside this repository) to record ratios")
    try:
        text = Path(path).read_text()
    except OSError as err:
        return None, f"{SCRIPT_ENV}={path} cannot be read: {err.strerror}"
    if not S3_LINE.search(text):
        return None, f"{path} has no S3_URL=\"https://s3....\" line to point at the lab"
    return text, ""


def _lab_serves_exec_tarball(lab: Any, script: str) -> str:
    """The script always downloads the ECS Exec binaries (and untars them under set -e)."""
    found = EXEC_VERSION.search(script)
    version = found.group(1) if found else "latest"
    url = (f"{_package_url(lab)}/s3/amazon-ssm-{lab.region}/{version}/linux_amd64/"
           "amazon-ssm-agent-binaries.tar.gz")
    try:
        head = urllib.request.Request(url, method="HEAD")  # noqa: S310 - the lab's http URL
        with urllib.request.urlopen(head, timeout=5):  # noqa: S310
            return ""
    except (urllib.error.URLError, OSError) as err:
        return (f"the lab does not serve {url} ({err}), which the script always downloads; "
                "the side-by-side needs the lab's ECS Exec tarball")


def _package_url(lab: Any) -> str:
    return str(lab._state().data["processes"]["package-server"]["url"])


def _bench(lab: Any, runs: int, docker: bool, script: str | None,
           why_not: str) -> list[dict[str, Any]]:
    from anywhere_agent.lab import rollout

    url = lab.control_plane_url()
    activation = rollout.prepare(url, lab.region, CLUSTER, 4 * runs + 4)
    names = [h.name for h in lab.hosts()]
    probe, rest = names[0], names[1:]
    docker_host = rest.pop(0) if docker else ""
    ours_hosts = rest[:runs]
    theirs_hosts = rest[runs:] if script else []
    for host in [probe, *ours_hosts, *([docker_host] if docker else [])]:
        lab.install_product(host)
        rollout.write_config(lab, host, rollout.node_config(
            url, lab.region, CLUSTER, "distro" if host == docker_host else "none"))
    for host in theirs_hosts:
        _prepare_official(lab, host, script or "", url)
    floor = _floor(lab, probe)
    parts = _parts(lab, probe)
    watch = JoinWatch(lab, url)

    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for i in range(runs):
        # Alternate who goes first, so a drift in the machine's load hits both alike.
        order = [("ours", ours_hosts[i])] + ([("theirs", theirs_hosts[i])] if script else [])
        for who, host in (order if i % 2 == 0 else order[::-1]):
            if who == "ours":
                ours.append(watch.run(host, lambda h=host: rollout.install(
                    lab, h, activation, via="exec")))
            else:
                theirs.append(watch.run(host, lambda h=host: _run_official(
                    lab, h, activation, url)))
    reruns_ours: list[float] = []
    reruns_theirs: list[float] = []
    for i in range(runs):
        for who in (("ours", "theirs") if i % 2 == 0 else ("theirs", "ours")):
            if who == "ours":
                t0 = time.perf_counter()
                code, again, err = rollout.install(lab, ours_hosts[i], None, via="exec")
                reruns_ours.append(time.perf_counter() - t0)
                if code != 0 or again.get("changed"):
                    raise SystemExit(f"re-run changed something or failed: {err[-500:]}")
            elif script:
                t0 = time.perf_counter()
                code, _, err = _run_official(lab, theirs_hosts[i], activation, url)
                reruns_theirs.append(time.perf_counter() - t0)
                if code != 0:
                    raise SystemExit(f"the script's re-run failed: {err[-500:]}")
    rerun_imports = _rerun_imports(lab, ours_hosts[0])

    records: list[dict[str, Any]] = []
    if docker:
        records.append(_docker_record(lab, docker_host, activation, ours, floor))
    records.append({
        "bench": "lab_apt_cache", **lab.apt_cache_stats(),
        "note": "the lab's Debian proxy for this lab; a hit rate near 1 means an earlier lab "
                "(or CI run) had filled /var/cache/anywhere-agent-lab/apt",
    })
    joined = statistics.median(r["joined"] for r in ours)
    exited = statistics.median(r["exit"] for r in ours)
    rerun = statistics.median(reruns_ours)
    typical = min(ours, key=lambda r: abs(r["joined"] - joined))
    after_joined = statistics.median(r["exit"] - r["joined"] for r in ours)
    records.append({
        "bench": "install_to_joined", "seconds": round(joined, 3),
        "exit_seconds": round(exited, 3),
        "exit_after_joined_seconds": round(after_joined, 3),
        "exit_after_joined_target_seconds": TARGETS["exit_after_joined"],
        "exit_after_joined_meets_target": after_joined <= TARGETS["exit_after_joined"],
        "runs": [{k: round(v, 3) for k, v in r.items() if isinstance(v, float)} for r in ours],
        "python_c_pass_seconds": round(floor, 4), "ratio_to_python_c_pass":
        round(joined / floor, 1), "target_seconds": TARGETS["install_to_joined"],
        "meets_target": joined <= TARGETS["install_to_joined"],
        "note": "fresh lab host, nothing prefetched, docker_source none; joined = control "
                "plane shows Online + ACTIVE + agentConnected",
        "steps": typical["steps"],
    })
    records.append({
        "bench": "rerun_joined", "seconds": round(rerun, 3),
        "runs": [round(s, 3) for s in reruns_ours],
        "python_c_pass_seconds": round(floor, 4), "ratio_to_python_c_pass":
        round(rerun / floor, 1), "target_seconds": TARGETS["rerun_joined"],
        "meets_target": rerun <= TARGETS["rerun_joined"],
        "imports": rerun_imports,
        "note": "`install --json` on a joined host, no activation; nothing may change",
    })
    records.append({"bench": "install_parts", "python_c_pass_seconds": round(floor, 4),
                    **parts, "wait_for_join_seconds": {
                        k: typical["steps"].get(k) for k in ("ssm-credentials", "verify-join")},
                    "note": "each part alone on a fresh host (n1); wait_for_join from the "
                            "install whose time to joined is the median"})
    if script:
        t_joined = statistics.median(r["joined"] for r in theirs)
        t_exit = statistics.median(r["exit"] for r in theirs)
        t_rerun = statistics.median(reruns_theirs)
        ratios = {"joined": joined / t_joined, "exit": exited / t_exit, "rerun": rerun / t_rerun}
        records.append({
            "bench": "install_side_by_side",
            "ours": {"joined": round(joined, 3), "exit": round(exited, 3),
                     "rerun": round(rerun, 3)},
            "official": {"joined": round(t_joined, 3), "exit": round(t_exit, 3),
                         "rerun": round(t_rerun, 3),
                         "runs": [{k: round(v, 3) for k, v in r.items()
                                   if isinstance(v, float)} for r in theirs],
                         "reruns": [round(s, 3) for s in reruns_theirs]},
            "ratio_ours_to_official": {k: round(v, 2) for k, v in ratios.items()},
            "target_ratio": TARGETS["ratio_to_official"],
            "meets_target": ratios["joined"] <= 1.0 and ratios["rerun"] <= 1.0,
            "note": f"medians of {runs} fresh hosts each, alternating; the script with its "
                    "S3_URL at the lab, --skip-gpg-check, --docker-install-source none",
        })
    else:
        records.append({"bench": "install_side_by_side", "skipped": why_not})
    return records


class JoinWatch:
    """Runs an installer on a host and, beside it, polls the control plane until the host is
    joined; records the time to joined and the time to exit, from one t0."""

    def __init__(self, lab: Any, url: str) -> None:
        from anywhere_agent.lab import rollout

        self.lab, self.url = lab, url
        self.ssm = rollout.lab_client(url, "ssm", lab.region)
        self.ecs = rollout.lab_client(url, "ecs", lab.region)

    def run(self, host: str, install: Any, limit: float = 120.0) -> dict[str, Any]:
        registration = self.lab.host(host).merged / "var/lib/amazon/ssm/registration"
        done = threading.Event()
        joined: list[float] = []
        t0 = time.perf_counter()

        def poll() -> None:
            while not done.is_set() and time.perf_counter() - t0 < limit:
                if self._joined(registration):
                    joined.append(time.perf_counter() - t0)
                    return
                time.sleep(0.05)

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        code, _, err = install()
        exited = time.perf_counter() - t0
        if code != 0:
            done.set()
            raise SystemExit(f"install on {host} failed ({code}): {err[-800:]}")
        watcher.join(timeout=limit)
        done.set()
        if not joined:
            raise SystemExit(f"{host} did not show as joined within {limit:.0f} s")
        return {"joined": joined[0], "exit": exited, "steps": _steps(err)}

    def _joined(self, registration: Path) -> bool:
        try:
            mi = json.loads(registration.read_text()).get("ManagedInstanceID", "")
        except (OSError, ValueError):
            return False
        if not mi:
            return False
        infos = self.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [mi]}])["InstanceInformationList"]
        if not any(i.get("PingStatus") == "Online" for i in infos):
            return False
        arns = self.ecs.list_container_instances(cluster=CLUSTER)["containerInstanceArns"]
        if not arns:
            return False
        cis = self.ecs.describe_container_instances(cluster=CLUSTER, containerInstances=arns)
        return any(c.get("ec2InstanceId") == mi and c.get("status") == "ACTIVE"
                   and c.get("agentConnected") for c in cis["containerInstances"])


def _steps(stderr: str) -> dict[str, float]:
    """install's per-step seconds from its progress lines (`step=NAME ... seconds=S`)."""
    return {line.split()[0][5:]: float(line.split("seconds=")[1].split()[0])
            for line in stderr.splitlines() if line.startswith("step=")}


def _prepare_official(lab: Any, host: str, script: str, url: str) -> None:
    base = f"{_package_url(lab)}/s3"
    text = S3_LINE.sub(f'S3_URL="{base}"', script, count=1)
    lab.exec(host, ["dd", "of=/root/ecs-anywhere-install.sh", "status=none"],
             input=text.encode())
    # The script has no flag for the SSM endpoint; an operator on private endpoints writes
    # this file first (the script keeps an existing one). Ours writes it inside its run.
    config = {"Ssm": {"Endpoint": url}, "Mds": {"Endpoint": url}, "Mgs": {"Endpoint": url}}
    lab.exec(host, ["mkdir", "-p", "/etc/amazon/ssm"])
    lab.exec(host, ["dd", "of=/etc/amazon/ssm/amazon-ssm-agent.json", "status=none"],
             input=json.dumps(config).encode())


def _run_official(lab: Any, host: str, activation: Any, url: str) -> tuple[int, dict[str, Any],
                                                                            str]:
    # The script takes the code on its argv (AWS's interface); lab activation, lab host only.
    argv = ["bash", "/root/ecs-anywhere-install.sh", "--region", lab.region,
            "--cluster", CLUSTER, "--activation-id", activation.activation_id,
            "--activation-code", activation.code.reveal(), "--skip-gpg-check",
            "--docker-install-source", "none", "--ecs-endpoint", url]
    proc = lab.exec(host, argv, check=False)
    return proc.returncode, {}, (proc.stdout + proc.stderr).decode(errors="replace")


def _timed(lab: Any, host: str, argv: list[str], repeat: int = 1) -> float:
    """Median wall seconds of argv on the host (nsenter included, as in every figure)."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        proc = lab.exec(host, argv, check=False)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} on {host} failed: {proc.stderr.decode()[-400:]}")
    return round(statistics.median(times), 4)


def _floor(lab: Any, host: str) -> float:
    return _timed(lab, host, ["python3", "-c", "pass"], repeat=5)


def _parts(lab: Any, host: str) -> dict[str, Any]:
    """Each part of an install alone, on a fresh host, in the order install meets them."""
    from anywhere_agent.lab import image

    py = f"{image.VENV}/bin/python"
    parts: dict[str, Any] = {
        "python_startup_venv_seconds": _timed(lab, host, [py, "-c", "pass"], repeat=5),
        "cli_help_seconds": _timed(lab, host, ["anywhere-agent", "--help"], repeat=3),
        "imports_ms": {
            "cli": _import_ms(lab, host, "anywhere_agent.cli.main"),
            "install": _import_ms(lab, host, "anywhere_agent.install.apply"),
            "boto3": _import_ms(lab, host, "boto3"),
        },
        "preflight_seconds": _timed(lab, host, ["anywhere-agent", "preflight", "--json"]),
        "preflight_no_network_seconds": _timed(lab, host, ["anywhere-agent", "preflight",
                                                           "--json", "--no-network"]),
    }
    parts["apt_update_cold_seconds"] = _timed(lab, host, ["apt-get", "update", "-q"])
    parts["apt_update_warm_seconds"] = _timed(lab, host, ["apt-get", "update", "-q"])
    pkgs = ["amazon-ssm-agent", "amazon-ecs-init"]
    parts["apt_download_seconds"] = _timed(lab, host, [
        "apt-get", "install", "-y", "-q", "--download-only", "--no-install-recommends", *pkgs])
    debs = lab.exec(host, ["sh", "-c", "ls /var/cache/apt/archives/amazon-*.deb"]).stdout
    parts["dpkg_install_seconds"] = _timed(lab, host, ["dpkg", "-i",
                                                       *debs.decode().split()])
    parts["dpkg_purge_seconds"] = _timed(lab, host, ["dpkg", "--purge", *pkgs])
    parts["apt_install_cached_seconds"] = _timed(lab, host, [
        "apt-get", "install", "-y", "-q", "--no-install-recommends", *pkgs])
    for unit in ("amazon-ssm-agent", "ecs"):
        lab.exec(host, ["systemctl", "stop", unit], check=False)
        parts[f"start_{unit}_seconds"] = _timed(lab, host, ["systemctl", "start", unit])
        lab.exec(host, ["systemctl", "stop", unit], check=False)
        parts[f"start_{unit}_no_block_seconds"] = _timed(
            lab, host, ["systemctl", "start", "--no-block", unit])
        lab.exec(host, ["systemctl", "stop", unit], check=False)
    return parts


def _import_ms(lab: Any, host: str, module: str) -> float:
    """Cumulative import time of `module` in a fresh interpreter (`python -X importtime`)."""
    from anywhere_agent.lab import image

    proc = lab.exec(host, [f"{image.VENV}/bin/python", "-X", "importtime", "-c",
                           f"import {module}"])
    return round(_import_table(proc.stderr.decode()).get(module, 0.0), 1)


def _import_table(text: str) -> dict[str, float]:
    """module -> cumulative ms from -X importtime's `import time: self | cumulative | name`."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = (p.strip() for p in line[len("import time:"):].split("|"))
        out.setdefault(name.strip(), int(cumulative) / 1000.0)
    return out


def _rerun_imports(lab: Any, host: str) -> dict[str, Any]:
    """What a re-run imports: the heaviest top-level packages, and whether boto3 is one."""
    from anywhere_agent.lab import image

    proc = lab.exec(host, [f"{image.VENV}/bin/python", "-X", "importtime", "-m",
                           "anywhere_agent.cli.entry", "install", "--json"], check=False)
    table = _import_table(proc.stderr.decode())
    top = {k: v for k, v in table.items() if "." not in k}
    heaviest = dict(sorted(top.items(), key=lambda kv: -kv[1])[:8])
    return {"boto3_imported": "boto3" in table, "boto3_ms": table.get("boto3"),
            "heaviest_ms": {k: round(v, 1) for k, v in heaviest.items()}}


def _docker_record(lab: Any, host: str, activation: Any, ours: list[dict[str, Any]],
                   floor: float) -> dict[str, Any]:
    from anywhere_agent.lab import rollout

    t0 = time.perf_counter()
    code, _, err = rollout.install(lab, host, activation, via="exec")
    docker_s = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"install with Docker failed: {err[-500:]}")
    without = statistics.median(r["exit"] for r in ours)
    return {
        "bench": "install_to_joined_docker", "seconds": round(docker_s, 3),
        "seconds_without_docker": round(without, 3),
        "ratio_to_docker_none": round(docker_s / without, 1),
        "python_c_pass_seconds": round(floor, 4),
        "target_seconds": TARGETS["install_to_joined_docker"],
        "meets_target": docker_s <= TARGETS["install_to_joined_docker"],
        "note": "docker_source = distro vs none (median of the fresh hosts), one lab, fresh "
                "hosts; time to exit",
        "steps": _steps(err),
    }


if __name__ == "__main__":
    raise SystemExit(main())
