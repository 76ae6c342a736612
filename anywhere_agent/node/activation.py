"""The activation code for install: from a file, standard input or the environment, never argv."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from anywhere_agent.config import ACTIVATION_CODE_ENV as CODE_ENV
from anywhere_agent.config import Config
from anywhere_agent.errors import ActivationError
from anywhere_agent.install.context import Activation
from anywhere_agent.secret import RedactingFilter, Secret


def read_code(code_file: str | None, environ: Mapping[str, str], redactor: RedactingFilter,
              stdin: TextIO | None = None, warn: TextIO | None = None) -> Secret | None:
    """The code from `code_file`, `-` (standard input) or CODE_ENV; None when none is given.

    The code is added to `redactor` (the process's log filter) before anything can print
    it."""
    stdin = sys.stdin if stdin is None else stdin
    warn = sys.stderr if warn is None else warn
    raw: str | None = None
    if code_file == "-":
        where = "standard input"
        try:
            # `<&-` leaves no stdin at all (None); a closed or unreadable one raises.
            raw = stdin.read() if stdin is not None else None
        except (OSError, ValueError):
            raw = None
        if raw is None:
            raise ActivationError("--activation-code-file - was given but standard input is "
                                  "closed", "pipe the code in (`... --activation-code-file - "
                                  "< FILE`) or pass the file's path instead of -")
    elif code_file:
        try:
            raw = Path(code_file).read_text(encoding="utf-8")
            mode = Path(code_file).stat().st_mode & 0o777
        except (OSError, UnicodeDecodeError) as err:
            reason = getattr(err, "strerror", None) or "not UTF-8 text"
            raise ActivationError(f"cannot read activation code file {code_file}: "
                                  f"{reason}", "check the path and permissions") from None
        if mode & 0o077:
            # Not refused: the code may already have leaked, and refusing would not undo that.
            print(f"warning: activation code file {code_file} is readable by other users "
                  f"(mode {mode:04o}); `chmod 600 {code_file}`, or pipe the code on standard "
                  "input, and consider revoking this activation after install", file=warn)
        where = code_file
    elif environ.get(CODE_ENV) is not None:
        raw = environ[CODE_ENV]
        where = CODE_ENV
    if raw is None:
        return None
    code = raw.strip()
    if not code:
        raise ActivationError(f"the activation code from {where} is empty",
                              "put the ActivationCode from `registrar activate` there")
    secret = Secret(code)
    redactor.add(secret)
    return secret


def activation(cfg: Config, code: Secret | None) -> Activation | None:
    """The activation install registers with; a code needs its activation ID."""
    if code is None:
        return None
    if not cfg.activation_id:
        raise ActivationError("an activation code was given without its activation ID",
                              "pass --activation-id or set activation_id in agent.toml")
    return Activation(cfg.activation_id, code)
