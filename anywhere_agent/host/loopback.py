"""GET from a node-local HTTP API (ECS introspection): never through a proxy, never raises."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable

# (url, timeout) -> (HTTP status, body); status 0 means no answer.
HttpGet = Callable[[str, float], "tuple[int, bytes]"]


def loopback_get(url: str, timeout: float) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as err:
        return int(err.code), b""
    except (OSError, ValueError):
        return 0, b""
