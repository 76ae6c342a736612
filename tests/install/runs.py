"""One install run on the scripted node, the way every test in this folder drives it."""

from __future__ import annotations

import io
from typing import Any

from anywhere_agent.install.apply import Outcome, Progress, apply


def run_logged(ctx: Any) -> tuple[Outcome, str]:
    """apply() with plain (non-TTY) progress; the outcome and the progress lines it wrote."""
    stream = io.StringIO()
    outcome = apply(ctx, Progress(stream, tty=False))
    return outcome, stream.getvalue()


def run(ctx: Any) -> Outcome:
    return run_logged(ctx)[0]
