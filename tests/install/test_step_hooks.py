"""What each step owns besides check/apply: its guard, its undo, its typed unit actions."""

from __future__ import annotations

from typing import Any

import pytest

from anywhere_agent.errors import ActivationError
from anywhere_agent.install.apply import apply
from anywhere_agent.install.steps import FileStep, ServiceStep, UnitAction, Verb


class Quiet:
    def start(self, *a: Any) -> None: ...
    def done(self, *a: Any) -> None: ...


def test_a_needed_registration_without_a_code_stops_before_even_the_lock(node: Any) -> None:
    system, make_ctx, _ = node
    with pytest.raises(ActivationError) as raised:
        apply(make_ctx(with_code=False), Quiet())  # type: ignore[arg-type]
    assert "needs an SSM registration (not registered)" in raised.value.message
    assert not (system.root / "var/lib/anywhere-agent").exists()
    assert system.packages == {}


def test_service_actions_are_typed_and_render_as_before(node: Any) -> None:
    _, make_ctx, _ = node
    delta = ServiceStep("ecs-service", "ecs").check(make_ctx())
    assert delta is not None
    assert delta.services == [UnitAction(Verb.ENABLE, "ecs"), UnitAction(Verb.START, "ecs")]
    assert delta.summary == "enable ecs, start ecs"
    assert delta.to_dict()["services"] == ["enable ecs", "start ecs"]


def test_a_file_steps_undo_removes_the_file_and_the_dirs_it_created(node: Any) -> None:
    system, make_ctx, _ = node
    ctx = make_ctx()
    step = FileStep("x", "x", "/etc/new-dir/sub/x.conf", lambda c, old: "x=1\n",
                    readers=("ecs",))
    delta = step.check(ctx)
    assert delta is not None and [str(a) for a in delta.services] == ["restart ecs"]
    undo = step.undo(ctx, delta)
    step.apply(ctx, delta)
    assert (system.root / "etc/new-dir/sub/x.conf").read_text() == "x=1\n"
    assert undo is not None
    undo.action()
    assert not (system.root / "etc/new-dir").exists()
