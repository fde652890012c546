"""A conversation's states and the moves allowed between them; a bad move raises."""

from __future__ import annotations

from enum import Enum

from core.errors import InvalidTransition


class State(str, Enum):
    """Who holds the conversation."""

    BOT = "bot"
    WAITING_FOR_AGENT = "waiting_for_agent"
    WITH_AGENT = "with_agent"
    RESOLVED = "resolved"


# From each state, where it may go. Staying in the same state is always allowed.
ALLOWED: dict[State, frozenset[State]] = {
    State.BOT: frozenset({State.WAITING_FOR_AGENT, State.RESOLVED}),
    State.WAITING_FOR_AGENT: frozenset({State.WITH_AGENT, State.BOT, State.RESOLVED}),
    State.WITH_AGENT: frozenset({State.BOT, State.RESOLVED}),
    State.RESOLVED: frozenset({State.BOT, State.WAITING_FOR_AGENT}),
}


def move(current: State | str, target: State | str) -> State:
    """The new state, or InvalidTransition when `current` may not go to `target`."""
    source, destination = State(current), State(target)
    if source is destination or destination in ALLOWED[source]:
        return destination
    raise InvalidTransition(f"a conversation cannot go from {source.value} to {destination.value}")


def bot_may_answer(state: State | str) -> bool:
    """Whether the bot speaks in this state; with a person involved it stays quiet."""
    return State(state) in (State.BOT, State.RESOLVED)
