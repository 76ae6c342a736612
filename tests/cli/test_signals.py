"""A command stopped by a signal exits 128 + its number: 143 for SIGTERM, 130 for Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from anywhere_agent.errors import ExitCode

# install's own handlers (SIGTERM/SIGHUP unwind like Ctrl-C), then the one error mapping.
BUSY = """
import sys, time
from anywhere_agent.cli import output
from anywhere_agent.cli.node import _terminate_as_exception
_terminate_as_exception()
with output.errors_to_exit():
    print("ready", flush=True)
    time.sleep(60)
"""


@pytest.mark.parametrize(("sig", "code", "word"), [
    (signal.SIGTERM, ExitCode.TERMINATED, "terminated"),
    (signal.SIGINT, ExitCode.INTERRUPTED, "interrupted"),
    (signal.SIGHUP, ExitCode.HANGUP, "interrupted"),
], ids=["sigterm", "sigint", "sighup"])
def test_a_signalled_command_exits_with_that_signals_code(sig: int, code: ExitCode,
                                                          word: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", BUSY], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == int(code) == 128 + sig
    assert err.strip() == word and "Traceback" not in err
