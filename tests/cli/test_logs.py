"""Logging is configured once per process; its redacting filter is handed to whoever learns a
secret, and no module holds a shared one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anywhere_agent.secret

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import logging
from anywhere_agent.cli import logs
from anywhere_agent.secret import Secret
masking = logs.configure(journal=False)
assert logs.redactor() is masking and logs.configure() is masking
logs.redactor().add(Secret("Sup3rSecretActivationCode"))
logging.getLogger("anywhere_agent.test").warning("code is %s", "Sup3rSecretActivationCode")
"""


def test_a_secret_added_to_the_processs_redactor_is_masked_in_its_log() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert "code is ***" in proc.stderr
    assert "Sup3rSecretActivationCode" not in proc.stderr


def test_there_is_no_module_level_redactor_to_mutate() -> None:
    assert not hasattr(anywhere_agent.secret, "REDACTOR")
