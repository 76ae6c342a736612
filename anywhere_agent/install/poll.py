"""Bounded polls on the install's injected clock and sleep: tenacity, short first, growing."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")


class _Deadline(tenacity.stop.stop_base):
    """Stop once the injected clock passed the deadline (tests drive the clock)."""

    def __init__(self, clock: Callable[[], float], deadline: float) -> None:
        self._clock, self._deadline = clock, deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self._clock() > self._deadline


def poll(probe: Callable[[], T | None], *, seconds: float, clock: Callable[[], float],
         sleep: Callable[[float], None], first: float, cap: float) -> T | None:
    """`probe()` until it answers (not None) or `seconds` passed; None when it never did.

    Waits start at `first` and double up to `cap`, so a quick answer is noticed quickly and a
    slow one costs few polls. The attempt bound is what the time bound allows at `first`.
    """
    retrying: tenacity.Retrying = tenacity.Retrying(
        stop=(_Deadline(clock, clock() + seconds)
              | tenacity.stop_after_attempt(math.ceil(seconds / first) + 1)),
        wait=tenacity.wait_exponential(multiplier=first, min=first, max=cap),
        retry=tenacity.retry_if_result(lambda answer: answer is None),
        sleep=sleep, retry_error_callback=lambda state: None, reraise=True,
    )
    answer: T | None = retrying(probe)
    return answer
