"""Logging handlers, configured once at the entry point: journald under systemd, else stderr."""

from __future__ import annotations

import logging
import os
import sys

from anywhere_agent.secret import RedactingFilter


def under_systemd() -> bool:
    return bool(os.environ.get("INVOCATION_ID") or os.environ.get("JOURNAL_STREAM"))


def redactor() -> RedactingFilter:
    """The filter `configure()` put on this process's log handler, for a command that learns a
    secret to add it; a new one, attached to nothing, when logging was not configured (then
    none of our handlers exists to leak through)."""
    for handler in logging.getLogger().handlers:
        for found in handler.filters:
            if isinstance(found, RedactingFilter):
                return found
    return RedactingFilter()


def configure(verbose: bool = False, journal: bool | None = None) -> RedactingFilter:
    """Handlers once per process; returns the redacting filter on them (see `redactor()`)."""
    root = logging.getLogger()
    if getattr(root, "_anywhere_configured", False):
        return redactor()
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
    masking = RedactingFilter()
    handler.addFilter(masking)
    handler.setLevel(level if verbose else logging.WARNING)
    root.addHandler(handler)
    root.setLevel(level)
    root._anywhere_configured = True  # type: ignore[attr-defined]
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return masking
