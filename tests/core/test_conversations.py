"""The conversation state machine allows the moves it lists and refuses the rest."""

from __future__ import annotations

import pytest

from core.conversations import State, bot_may_answer, move
from core.errors import InvalidTransition


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("bot", "waiting_for_agent"),
        ("waiting_for_agent", "with_agent"),
        ("with_agent", "bot"),
        ("with_agent", "resolved"),
        ("resolved", "bot"),
        ("bot", "bot"),
    ],
)
def test_allowed_moves(source: str, target: str) -> None:
    assert move(source, target) is State(target)


@pytest.mark.parametrize(("source", "target"), [("bot", "with_agent"), ("resolved", "with_agent")])
def test_a_bad_move_raises(source: str, target: str) -> None:
    with pytest.raises(InvalidTransition, match=f"from {source} to {target}"):
        move(source, target)


def test_the_bot_is_quiet_while_a_person_is_involved() -> None:
    assert bot_may_answer("bot") and bot_may_answer("resolved")
    assert not bot_may_answer("waiting_for_agent") and not bot_may_answer("with_agent")
