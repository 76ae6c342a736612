"""wait and drain poll soon after the first miss, then back off up to --interval."""

from __future__ import annotations

from datetime import timedelta

from anywhere_agent.registrar.wait import poll_until


def test_polls_start_half_a_second_apart_and_double_up_to_the_interval() -> None:
    answers = iter([False] * 6 + [True])
    pauses: list[float] = []
    polled = poll_until(lambda: next(answers), timedelta(minutes=5), 5.0, pauses.append)
    assert polled.done
    assert pauses == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_an_interval_under_half_a_second_is_kept_as_is() -> None:
    answers = iter([False, False, True])
    pauses: list[float] = []
    assert poll_until(lambda: next(answers), timedelta(seconds=30), 0.2, pauses.append).done
    assert pauses == [0.2, 0.2]
