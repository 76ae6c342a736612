"""A string wrapper for activation codes and credentials that never prints itself."""

from __future__ import annotations

import logging


class Secret:
    """Holds a secret; `str()`/`repr()` are masked so it cannot leak through logs or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __str__(self) -> str:
        return "***"

    __repr__ = __str__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class RedactingFilter(logging.Filter):
    """Defence in depth: masks known secret values if one ever reaches a log record."""

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def add(self, secret: Secret) -> None:
        if len(secret.reveal()) >= 6:
            self._values.add(secret.reveal())

    def filter(self, record: logging.LogRecord) -> bool:
        if self._values:
            msg = record.getMessage()
            if any(v in msg for v in self._values):
                for v in self._values:
                    msg = msg.replace(v, "***")
                record.msg, record.args = msg, None
        return True


REDACTOR = RedactingFilter()
