"""An injectable clock so probes, backoff and the breaker run on fake time in tests."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds for schedules, backoff and breaker windows (never jumps)."""

    def time(self) -> float:
        """Wall-clock epoch seconds, for file ages and timestamps in the health state."""


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()
