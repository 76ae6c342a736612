"""One place that renders results (table, JSON, plain) and turns errors into exit codes."""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

from anywhere_agent.errors import AgentError, ExitCode
from anywhere_agent.secret import redact_userinfo

LOG = logging.getLogger(__name__)
T = TypeVar("T")


def is_tty(stream: Any = None) -> bool:
    stream = stream or sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True, default=str)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """Plain aligned table; `columns` picks and orders the keys of each row."""
    cells = [[str(c) for c in columns]]
    for row in rows:
        cells.append(["" if row.get(c) is None else str(row.get(c)) for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells
    )


def print_table(rows: Callable[[], Iterable[Mapping[str, Any]]],
                columns: Sequence[str]) -> None:
    """An aligned table printed row by row: the rows are produced twice (widths, then lines)
    rather than held as strings (a 20,000-host fleet); the header alone when there are none."""
    widths = [len(c) for c in columns]
    for row in rows():
        widths = [max(w, len(_cell(row.get(c)))) for w, c in zip(widths, columns)]
    out = sys.stdout
    out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip() + "\n")
    for row in rows():
        out.write("  ".join(_cell(row.get(c)).ljust(w)
                            for c, w in zip(columns, widths)).rstrip() + "\n")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def fail(err: AgentError, as_json: bool) -> NoReturn:
    """Print one line (or a JSON object) for a user-caused error and exit with its code."""
    # A proxy URL in a message (a config error, a failed download) never shows its password.
    if as_json:
        print(redact_userinfo(to_json(err.to_dict())))
    else:
        print(redact_userinfo(f"error: {err}"), file=sys.stderr)
    raise SystemExit(int(err.exit_code))


@contextmanager
def errors_to_exit(as_json: bool = False) -> Iterator[None]:
    """Map AgentError to its exit code with no traceback; anything else is a bug (exit 1).

    An AWS error that no inner `aws_errors` caught still gets the one mapping (an unreachable
    endpoint is exit 7 with its fix wherever the call was made); botocore is imported only
    then, so the commands that never call AWS do not pay for it.
    """
    try:
        yield
    except AgentError as err:
        fail(err, as_json)
    except Exception as err:
        if not type(err).__module__.startswith("botocore."):
            raise
        from anywhere_agent.aws.clients import doing_of, translate

        LOG.debug("AWS error outside aws_errors()", exc_info=True)
        fail(translate(err, doing_of(err)), as_json)
    except KeyboardInterrupt as err:
        # A SIGTERM/SIGHUP handler raises a KeyboardInterrupt that names its signal
        # (`signum`): its exit code is that signal's, not Ctrl-C's.
        signum = int(getattr(err, "signum", signal.SIGINT))
        code = ExitCode(128 + signum) if 128 + signum in _SIGNAL_CODES else \
            ExitCode.INTERRUPTED
        print("terminated" if code is ExitCode.TERMINATED else "interrupted", file=sys.stderr)
        raise SystemExit(int(code)) from None


_SIGNAL_CODES = {int(ExitCode.HANGUP), int(ExitCode.INTERRUPTED), int(ExitCode.TERMINATED)}


def run(fn: Callable[[], T], as_json: bool = False) -> T:
    with errors_to_exit(as_json):
        return fn()
    raise AssertionError("unreachable")  # pragma: no cover


def exit_code_rows() -> list[dict[str, Any]]:
    return [{"code": int(c), "name": c.name.lower()} for c in ExitCode]
