"""Logging handlers, configured once at the entry point: journald under systemd, else stderr."""

from __future__ import annotations

import logging
import os
import sys

from anywhere_agent.secret import REDACTOR


def under_systemd() -> bool:
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM"))


def configure(verbose: bool = False, journal: bool | None = None) -> None:
    root = logging.getLogger()
    if getattr(root, "_anywhere_configured", False):
        return
    level = logging.DEBUG if verbose else logging.INFO
    handler: logging.Handler
    use_journal = under_systemd() if journal is None else journal
    if use_journal:
        try:
            from systemd.journal import JournalHandler

            handler = JournalHandler(SYSLOG_IDENTIFIER="anywhere-agent")
        except ImportError:
            handler = logging.StreamHandler(sys.stderr)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(REDACTOR)
    handler.setLevel(level if verbose else logging.WARNING)
    root.addHandler(handler)
    root.setLevel(level)
    root._anywhere_configured = True  # type: ignore[attr-defined]
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
