"""The supervisor's idle footprint: what a running round keeps imported, and the stdlib
memory reading that replaced psutil in the daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

from anywhere_agent.supervise.probes import _memory_percent

if TYPE_CHECKING:
    from conftest import Node

# Each of these stayed resident in the daemon once imported (MiB of private memory, measured
# in a lab host: psutil 1.3, tarfile 0.5, ctypes 0.2, encodings.idna 0.2, configparser 0.2).
NOT_AT_IDLE = ("psutil", "tarfile", "ctypes", "encodings.idna", "stringprep", "unicodedata",
               "configparser", "boto3", "botocore", "typer", "tenacity", "http.client", "ssl")

MEMINFO = """\
MemTotal:       16000000 kB
MemFree:         2000000 kB
MemAvailable:    4000000 kB
Buffers:          100000 kB
Cached:          1000000 kB
SReclaimable:     200000 kB
"""


def test_a_default_round_through_the_daemon_entry_imports_none_of_the_heavy_modules(
        node: Node) -> None:
    # A fresh interpreter, the service's own entry module, journald logging as under systemd,
    # then real rounds of every default probe (introspection over TCP, pressure, ECS Exec).
    code = f"""
import sys
import anywhere_agent.cli.supervise
from anywhere_agent.cli.logs import configure
from anywhere_agent.config import Config, HealthConfig, SuperviseConfig
from anywhere_agent.host.gateway import Host, Result
from anywhere_agent.supervise.daemon import Supervisor
configure(journal=True)
cfg = Config(cluster="lab", docker_source="distro",
             health=HealthConfig(state_file="/health.json"),
             supervise=SuperviseConfig(introspection_url="http://127.0.0.1:9/"))
sup = Supervisor(cfg, Host({str(node.root)!r},
                 runner=lambda argv, **kw: Result(tuple(argv), 1)))
sup.step()
names = sorted(m for m in sys.modules if m in {NOT_AT_IDLE!r}
               or m.split(".")[0] in {NOT_AT_IDLE!r})
import json
print(json.dumps({{"checks": [c.name for c in sup.health.checks], "imported": names}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    seen = json.loads(out.stdout)
    assert {"memory", "ecs_introspection", "ecs_exec"} <= set(seen["checks"])
    assert seen["imported"] == []
    assert json.loads((node.root / "health.json").read_text())["cluster"] == "lab"


def test_memory_percent_is_total_minus_available_over_total(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    assert _memory_percent(str(meminfo)) == 75.0


def test_memory_percent_without_memavailable_counts_reclaimable_cache_as_free(
        tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("".join(line + "\n" for line in MEMINFO.splitlines()
                               if not line.startswith("MemAvailable")))
    # free 2.0 + buffers 0.1 + cached 1.0 + reclaimable 0.2 of 16.0 GB
    assert _memory_percent(str(meminfo)) == pytest.approx(100 * (16.0 - 3.3) / 16.0, abs=0.05)


def test_memory_percent_agrees_with_psutil_on_this_machine() -> None:
    assert _memory_percent() == pytest.approx(psutil.virtual_memory().percent, abs=1.0)
