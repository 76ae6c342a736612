"""A string wrapper for activation codes and credentials that never prints itself."""

from __future__ import annotations

import logging
import re


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
    """Defence in depth: masks known secret values if one ever reaches a log record.

    One per process, made where logging is configured (cli/logs.py) and handed to whatever
    learns a secret (the activation code read by install, the codes `registrar activate`
    creates); there is no module-level instance to mutate.
    """

    def __init__(self) -> None:
        super().__init__()
        self._values: set[str] = set()

    def add(self, secret: Secret) -> None:
        if len(secret.reveal()) >= 6:
            self._values.add(secret.reveal())

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        clean = redact_userinfo(msg)
        for v in self._values:
            clean = clean.replace(v, "***")
        if clean != msg:
            record.msg, record.args = clean, None
        return True


# `scheme://user:password@` (or `scheme://token@`) in any text: how a proxy URL carries its
# credentials.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^\s:/@\"']*)"
                       r"(?P<password>:[^\s/@\"']*)?@")


def redact_userinfo(text: str) -> str:
    """Mask the credentials of every URL in `text`: `http://u:***@proxy:3128`, `http://***@p`."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:***@" if m["password"]
                         else f"{m['scheme']}***@", text)


def has_userinfo(text: str) -> bool:
    """Whether `text` holds a URL with credentials (such a file must not be world-readable)."""
    return _USERINFO.search(text) is not None
