"""Each output format checked against its own rules: Nagios plugin, Prometheus 0.0.4, JSON."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from anywhere_agent.health.model import Check, HostHealth, Status, overall
from anywhere_agent.health.render import as_json, nagios, prometheus

# Nagios plugin guidelines: 'label'=value[UOM];[warn];[crit];[min];[max]
_LABEL = r"(?:'(?:[^'=]|'')+'|[^'=\s|]+)"
_NUM = r"-?[0-9]+(?:\.[0-9]+)?"
_UOM = r"(?:s|ms|us|%|B|KB|MB|GB|TB|c)?"
PERFDATUM = re.compile(rf"^{_LABEL}={_NUM}{_UOM}(?:;(?:{_NUM})?){{0,4}}$")
STATUS_LINE = re.compile(r"^ANYWHERE-AGENT (OK|WARNING|CRITICAL|UNKNOWN) - [^|\n]+"
                         r"(?: \| (.+))?$")

# Prometheus text exposition 0.0.4, strictly
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
_PAIR = rf"[a-zA-Z_][a-zA-Z0-9_]*={_LABEL_VALUE}"
_LABELS = rf"\{{{_PAIR}(?:,{_PAIR})*\}}"
_VALUE = r"(?:[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)"
SAMPLE = re.compile(rf"^({_NAME})({_LABELS})? ({_VALUE})$")
HELP = re.compile(rf"^# HELP ({_NAME}) ((?:[^\\\n]|\\\\|\\n)*)$")
TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    """Prometheus' own checker: `promtool check metrics` (parse errors and lint)."""
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: .ci/apt-deps installs Debian's prometheus package"
    return subprocess.run([tool, "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30, check=False)


def parse_exposition(text: str) -> dict[tuple[str, str], float]:
    """Read the samples for value checks; it also refuses ungrouped and duplicate series,
    which promtool's linter lets through (validity itself is promtool's call)."""
    assert text.endswith("\n") and not text.endswith("\n\n")
    samples: dict[tuple[str, str], float] = {}
    helped: set[str] = set()
    typed: set[str] = set()
    finished: set[str] = set()
    current = ""
    for line in text[:-1].split("\n"):
        if m := HELP.match(line):
            assert m[1] not in helped, f"second HELP for {m[1]}"
            helped.add(m[1])
            continue
        if m := TYPE.match(line):
            assert m[1] not in typed and m[1] not in finished, f"TYPE after samples: {line}"
            typed.add(m[1])
            continue
        assert not line.startswith("#"), f"bad comment line: {line!r}"
        m = SAMPLE.match(line)
        assert m, f"not a valid sample line: {line!r}"
        name, labels, value = m[1], m[2] or "", m[3]
        if name != current:
            assert name not in finished, f"samples of {name} are not grouped"
            if current:
                finished.add(current)
            current = name
        assert name in typed, f"{name} has no TYPE line before its samples"
        assert (name, labels) not in samples, f"duplicate series {name}{labels}"
        samples[(name, labels)] = float(value)
    return samples


def sample_health(status: Status = Status.WARNING) -> HostHealth:
    checks = [
        Check("disk_root", Status.OK, "/ is 41.2% full", value=41.2, uom="%", warn=85,
              crit=95),
        Check("ssm_credentials", status, "credentials 31 min | old\nsecond line", value=1860.5,
              uom="s", warn=1800, crit=3600, failing_for=2, reason="stale"),
        Check('weird "name"\\with\nnewline', Status.OK, "odd"),
        Check("label with space's", Status.OK, "odd", value=-0.0001),
        Check("unit_docker", Status.UNKNOWN, "not installed (docker_source=none)",
              skipped=True),
    ]
    return HostHealth.build(checks, 1_800_000_000.25, cluster='la"b',
                            instance_id="mi-0123456789abcdef0")


@pytest.mark.parametrize("status", list(Status))
def test_nagios_line_is_one_status_line_whose_exit_code_is_the_status(status: Status) -> None:
    health = sample_health()
    health = HostHealth(status, health.checks, health.generated_at, summary="s")
    line, code = nagios(health)
    assert code == int(status) and code in (0, 1, 2, 3)
    assert "\n" not in line
    m = STATUS_LINE.match(line)
    assert m and m[1] == status.name


def test_nagios_perfdata_follows_the_plugin_grammar() -> None:
    line, _ = nagios(sample_health())
    m = STATUS_LINE.match(line)
    assert m and m[2]
    data = m[2].split(" ")
    # A quoted label may contain a space: rejoin the pieces split inside quotes.
    joined: list[str] = []
    for piece in data:
        if joined and joined[-1].count("'") % 2 == 1:
            joined[-1] += " " + piece
        else:
            joined.append(piece)
    for datum in joined:
        assert PERFDATUM.match(datum), datum
    assert "disk_root=41.2%;85;95;0;100" in joined
    assert "ssm_credentials=1860.5s;1800;3600" in joined
    assert "'label with space''s'=0" in joined
    assert not any(d.startswith("unit_docker") for d in joined)  # skipped: no perfdata


def test_nagios_text_never_carries_a_pipe_or_newline_from_a_summary() -> None:
    line, _ = nagios(sample_health(Status.CRITICAL))
    text = line.split(" | ")[0]
    assert "|" not in text and "\n" not in text
    assert text.startswith("ANYWHERE-AGENT CRITICAL - ssm_credentials: credentials 31 min / old")


def test_prometheus_exposition_passes_promtool_check_metrics_without_a_lint_warning() -> None:
    text = prometheus(sample_health(), age_seconds=3.5)
    checked = promtool(text)
    assert checked.returncode == 0 and checked.stdout + checked.stderr == "", checked
    samples = parse_exposition(text)
    assert samples[("anywhere_agent_health_status", "")] == 1.0
    assert samples[("anywhere_agent_check_status", '{check="ssm_credentials"}')] == 1.0
    assert samples[("anywhere_agent_check_value",
                    '{check="disk_root",unit="percent"}')] == 41.2
    assert samples[("anywhere_agent_check_failing_probes",
                    '{check="ssm_credentials"}')] == 2.0
    assert samples[("anywhere_agent_check_skipped", '{check="unit_docker"}')] == 1.0
    assert ("anywhere_agent_check_status", '{check="unit_docker"}') not in samples
    assert samples[("anywhere_agent_state_age_seconds", "")] == 3.5


def test_prometheus_escapes_backslash_quote_and_newline_in_label_values() -> None:
    text = prometheus(sample_health())
    assert 'check="weird \\"name\\"\\\\with\\nnewline"' in text
    assert 'cluster="la\\"b"' in text
    assert promtool(text).returncode == 0
    parse_exposition(text)


@pytest.mark.parametrize("bad", ['# HELP m h\n# TYPE m gauge\nm{check="a"b"} 1\n',
                                 "# HELP m h\n# TYPE m gauge\nm one\n",
                                 "m 1\n"])
def test_promtool_rejects_what_the_format_forbids(bad: str) -> None:
    assert promtool(bad).returncode != 0


@pytest.mark.parametrize("bad", ["# TYPE m gauge\nm 1\nother 2\nm 3\n",
                                 "# TYPE m gauge\nm 1\nm 1\n"])
def test_the_reader_refuses_series_promtool_lets_through(bad: str) -> None:
    with pytest.raises(AssertionError):
        parse_exposition(bad)


def test_json_has_stable_snake_case_keys() -> None:
    data = json.loads(as_json(sample_health()))
    assert set(data) == {"schema", "status", "status_code", "summary", "generated_at",
                         "cluster", "instance_id", "container_instance_arn", "pid",
                         "interval_seconds", "checks"}
    assert set(data["checks"][0]) == {"name", "status", "status_code", "summary", "value",
                                      "uom", "warn", "crit", "fix", "failing_for", "skipped",
                                      "reason"}
    keys = set(data) | {k for c in data["checks"] for k in c}
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", k) for k in keys)


def test_json_round_trips_to_the_same_health() -> None:
    health = sample_health()
    assert HostHealth.from_dict(json.loads(as_json(health))) == health


def test_critical_outranks_unknown_and_skipped_checks_do_not_count() -> None:
    crit = Check("a", Status.CRITICAL, "")
    unk = Check("b", Status.UNKNOWN, "")
    skipped = Check("c", Status.UNKNOWN, "", skipped=True)
    assert overall([crit, unk]) is Status.CRITICAL
    assert overall([unk, Check("d", Status.WARNING, "")]) is Status.UNKNOWN
    assert overall([Check("d", Status.OK, ""), skipped]) is Status.OK
