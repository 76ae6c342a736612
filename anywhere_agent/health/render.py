"""Render HostHealth for monitoring: Nagios plugin output, Prometheus exposition 0.0.4, JSON."""

from __future__ import annotations

import json
import math
import re
from typing import Optional

from anywhere_agent.health.model import HostHealth

NAGIOS_PREFIX = "ANYWHERE-AGENT"
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Units of measure the Nagios plugin guidelines define; anything else is dropped.
_NAGIOS_UOM = {"", "s", "ms", "us", "%", "B", "KB", "MB", "GB", "TB", "c"}
_PROM_UNIT = {"s": "seconds", "%": "percent", "B": "bytes", "c": "count", "": ""}
_NEEDS_QUOTE = re.compile(r"[\s='|]")


# --- Nagios --------------------------------------------------------------------------------

def _nagios_num(value: Optional[float]) -> str:
    if value is None or not math.isfinite(value):
        return ""
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _nagios_label(name: str) -> str:
    if _NEEDS_QUOTE.search(name):
        return "'" + name.replace("'", "''") + "'"
    return name


def _nagios_text(text: str) -> str:
    # '|' starts perfdata and a newline would start long output: neither may be in the text.
    return " ".join(text.replace("|", "/").split())


def nagios(health: HostHealth) -> tuple[str, int]:
    """One status line `ANYWHERE-AGENT STATE - summary | perfdata` and the plugin exit code."""
    perf: list[str] = []
    for check in health.checks:
        if check.value is None or not math.isfinite(check.value) or check.skipped:
            continue
        uom = check.uom if check.uom in _NAGIOS_UOM else ""
        lo, hi = (0.0, 100.0) if uom == "%" else (None, None)
        fields = [_nagios_num(check.warn), _nagios_num(check.crit), _nagios_num(lo),
                  _nagios_num(hi)]
        tail = ";".join(fields).rstrip(";")
        perf.append(f"{_nagios_label(check.name)}={_nagios_num(check.value)}{uom}"
                    + (f";{tail}" if tail else ""))
    line = f"{NAGIOS_PREFIX} {health.status.name} - {_nagios_text(health.summary) or '-'}"
    if perf:
        line += " | " + " ".join(perf)
    return line, int(health.status)


# --- Prometheus ----------------------------------------------------------------------------

def _prom_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


def _prom_num(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def prometheus(health: HostHealth, age_seconds: Optional[float] = None) -> str:
    """Text exposition format 0.0.4: HELP and TYPE once per family, escaped label values."""
    out: list[str] = []

    def family(name: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        if not samples:
            return
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            out.append(f"{name}{labels} {_prom_num(value)}")

    def labels(**kv: str) -> str:
        return "{" + ",".join(f'{k}="{_prom_label(v)}"' for k, v in kv.items()) + "}"

    codes = "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN"
    family("anywhere_agent_health_status", f"Overall node health ({codes}).",
           [("", float(health.status))])
    family("anywhere_agent_info", "Node identity as labels; the value is always 1.",
           [(labels(cluster=health.cluster, instance_id=health.instance_id), 1.0)])
    counted = [c for c in health.checks if not c.skipped]
    family("anywhere_agent_check_status", f"Status of each check ({codes}).",
           [(labels(check=c.name), float(c.status)) for c in counted])
    family("anywhere_agent_check_skipped",
           "1 when a check does not apply to this node (e.g. Docker not managed).",
           [(labels(check=c.name), 1.0 if c.skipped else 0.0) for c in health.checks])
    family("anywhere_agent_check_failing_probes",
           "Consecutive failed probes of each check.",
           [(labels(check=c.name), float(c.failing_for)) for c in counted])
    family("anywhere_agent_check_value",
           "Measured value of each check that has one, in the unit given by the unit label.",
           [(labels(check=c.name, unit=_PROM_UNIT.get(c.uom, c.uom)), c.value)
            for c in counted if c.value is not None])
    family("anywhere_agent_state_generated_timestamp_seconds",
           "When the supervisor wrote this health state (Unix time).",
           [("", health.generated_at)])
    if age_seconds is not None:
        family("anywhere_agent_state_age_seconds", "Age of the supervisor's health state.",
               [("", age_seconds)])
    return "\n".join(out) + "\n"


# --- JSON ----------------------------------------------------------------------------------

def as_json(health: HostHealth) -> str:
    return json.dumps(health.to_dict(), indent=2, sort_keys=True)
