"""PreflightReport: ok, the JSON contract, and the text rendering."""

from __future__ import annotations

import json

from anywhere_agent.preflight import CheckResult, PreflightReport

REPORT = PreflightReport((
    CheckResult("root", "pass", "running as root"),
    CheckResult("memory", "warn", "only 0.5 GiB RAM", "add memory"),
    CheckResult("endpoint_ssm", "fail", "ssm unreachable", "open the firewall"),
    CheckResult("package_source", "skip", "repo: not probed", "never shown"),
))


def test_report_is_ok_with_warnings_and_skips_but_not_with_a_failure() -> None:
    assert not REPORT.ok
    assert [c.name for c in REPORT.failed] == ["endpoint_ssm"]
    assert PreflightReport(REPORT.checks[:2] + REPORT.checks[3:]).ok


def test_report_json_keys_are_stable_snake_case() -> None:
    doc = json.loads(json.dumps(REPORT.to_dict()))
    assert list(doc) == ["ok", "counts", "checks"]
    assert doc["ok"] is False
    assert doc["counts"] == {"pass": 1, "warn": 1, "fail": 1, "skip": 1}
    assert all(list(c) == ["name", "status", "summary", "fix"] for c in doc["checks"])
    assert doc["checks"][2] == {"name": "endpoint_ssm", "status": "fail",
                                "summary": "ssm unreachable", "fix": "open the firewall"}


def test_render_text_has_one_line_per_check_with_fixes_on_warnings_and_failures() -> None:
    lines = REPORT.render_text().splitlines()
    assert len(lines) == len(REPORT.checks)
    assert lines[0].startswith("PASS") and "fix:" not in lines[0]
    assert lines[1].startswith("WARN") and lines[1].endswith("fix: add memory")
    assert lines[2].startswith("FAIL") and lines[2].endswith("fix: open the firewall")
    assert lines[3].startswith("SKIP") and "never shown" not in lines[3]
    # names are aligned into one column
    assert len({line.index(c.summary) for line, c in zip(lines, REPORT.checks)}) == 1


def test_render_text_is_plain_unless_colour_is_asked_for() -> None:
    assert "\x1b[" not in REPORT.render_text()
    coloured = REPORT.render_text(color=True)
    assert "\x1b[31mFAIL\x1b[0m" in coloured
    assert len(coloured.splitlines()) == len(REPORT.checks)


def test_summary_line_counts_each_status() -> None:
    assert REPORT.summary_line() == (
        "preflight FAILED: 1 passed, 1 warnings, 1 failed, 1 skipped")
