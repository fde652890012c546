"""The port through which the dialogue asks the knowledge base, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol


class Decision(str, Enum):
    """What the matcher advises: answer, ask the user which topic they meant, or admit ignorance."""

    ANSWER = "answer"
    ASK = "ask"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Candidate:
    """One topic the question may be about, with the matcher's confidence in it."""

    topic: str
    title: str
    confidence: float


@dataclass(frozen=True)
class FaqResult:
    """The matcher's verdict on one question.

    `topic`, `answer` and `title` are set only when `decision` is ANSWER. `candidates` holds the
    likeliest topics, best first (at least the top one whenever the knowledge base is not
    empty), so the dialogue can ask back with them when `decision` is ASK.
    """

    decision: Decision
    confidence: float
    topic: str | None = None
    title: str | None = None
    answer: str | None = None
    candidates: tuple[Candidate, ...] = field(default_factory=tuple)


class FaqAnswerer(Protocol):
    """Answers a free-text question from the knowledge base."""

    def lookup(self, text: str) -> FaqResult:
        """Match `text` against the knowledge base; never raises on any string."""
        ...

    def answer_for(self, topic: str) -> FaqResult:
        """The answer for a topic chosen by id (a quick reply); UNKNOWN if no such topic."""
        ...


class TopicCatalogue(Protocol):
    """The topics the knowledge base covers, for menus."""

    def topics(self, audience: str | None = None) -> list[Candidate]:
        """Topics (confidence 1.0) for `audience` (organiser, backer, participant), or all."""
        ...


class KnowledgeBase(FaqAnswerer, TopicCatalogue, Protocol):
    """What the dialogue needs from the knowledge base."""
