"""Structured journald fields for log records (`extra=`); ignored by plain stderr handlers."""

from __future__ import annotations


def fields(**values: object) -> dict[str, str]:
    """`fields(check="ecs_introspection", status="CRITICAL")` -> {"CHECK": ..., "STATUS": ...}.

    systemd's JournalHandler sends every record attribute; journald keeps the upper-case ones
    as fields, so `journalctl CHECK=ecs_introspection` finds the history of one check.
    """
    return {f"{key.upper()}": str(value) for key, value in values.items() if value != ""}
