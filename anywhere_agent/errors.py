"""One error base class; each subclass carries its exit code, and every message names a fix.

The table of exit codes lives here and only here (README.md "Exit codes" is generated from it
by `anywhere-agent exit-codes`, and a test checks they agree).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of every `anywhere-agent` command except `health` (Nagios 0-3)."""

    OK = 0
    INTERNAL = 1  # a bug: please report it with `anywhere-agent status --json`
    USAGE = 2  # bad flag or argument, or a secret given on the command line
    CONFIG = 3  # malformed or invalid agent.toml / environment / flag value
    PREFLIGHT = 4  # the host cannot run ECS Anywhere as it is (root, systemd, arch, ...)
    ACTIVATION = 5  # activation missing, empty, invalid, expired or exhausted
    CLOUD = 6  # AWS refused: wrong region, unknown cluster, access denied, throttled out
    NETWORK = 7  # an endpoint or package source could not be reached
    HOST_IO = 8  # the host's disk refused a write (read-only, full, permissions)
    LOCKED = 9  # another anywhere-agent run holds the lock
    PACKAGE = 10  # package download, signature, checksum or install failed
    NOT_JOINED = 11  # install finished but the join could not be proven in time
    REFUSED = 12  # a safety check refused (running tasks on uninstall, prune without --yes)
    TIMEOUT = 13  # a bounded wait ran out (registrar wait, drain)
    PARTIAL = 14  # several independent actions ran and some failed (uninstall, prune)
    LAB = 15  # the lab could not be brought up or torn down
    # Stopped by a signal: 128 + its number, as a shell reports it, so a caller can tell
    # who stopped the run (a terminal's Ctrl-C, systemd or a timeout's SIGTERM, a hangup).
    HANGUP = 129  # SIGHUP: the terminal or session went away; a re-run finishes the work
    INTERRUPTED = 130  # SIGINT (Ctrl-C); a re-run finishes the work
    TERMINATED = 143  # SIGTERM (kill, systemd, timeout); a re-run finishes the work


class AgentError(Exception):
    """Base of every error a user can cause; `str()` is the one-line message with its fix."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.message}; fix: {self.fix}" if self.fix else self.message

    def to_dict(self) -> dict[str, object]:
        return {
            "error": type(self).__name__,
            "message": self.message,
            "fix": self.fix,
            "exit_code": int(self.exit_code),
        }


class UsageError(AgentError):
    exit_code = ExitCode.USAGE


class ConfigError(AgentError):
    exit_code = ExitCode.CONFIG


class PreflightError(AgentError):
    exit_code = ExitCode.PREFLIGHT


class ActivationError(AgentError):
    exit_code = ExitCode.ACTIVATION


class CloudError(AgentError):
    exit_code = ExitCode.CLOUD


class NetworkError(AgentError):
    exit_code = ExitCode.NETWORK


class HostIOError(AgentError):
    exit_code = ExitCode.HOST_IO


class LockedError(AgentError):
    exit_code = ExitCode.LOCKED


class PackageError(AgentError):
    exit_code = ExitCode.PACKAGE


class NotJoinedError(AgentError):
    exit_code = ExitCode.NOT_JOINED


class RefusedError(AgentError):
    exit_code = ExitCode.REFUSED


class WaitTimeoutError(AgentError):
    exit_code = ExitCode.TIMEOUT


class PartialFailure(AgentError):
    """Several independent actions ran; `errors` lists each failure (uninstall, prune)."""

    exit_code = ExitCode.PARTIAL

    def __init__(self, message: str, errors: list[str], fix: str = "") -> None:
        super().__init__(message, fix)
        self.errors = errors

    def __str__(self) -> str:
        return super().__str__() + "".join(f"\n  - {e}" for e in self.errors)

    def to_dict(self) -> dict[str, object]:
        d = super().to_dict()
        d["errors"] = list(self.errors)
        return d


class LabError(AgentError):
    exit_code = ExitCode.LAB
