"""The knowledge base behind the FaqAnswerer port: loads the FAQ folder, fits the matcher, answers."""

from __future__ import annotations

from pathlib import Path

from core.faq import Candidate, Decision, FaqResult
from knowledge.calibration import OOS_SHARE
from knowledge.embeddings import embedder_for
from knowledge.loader import FaqEntry, KnowledgeBase, load_knowledge_base
from knowledge.matcher import Matcher, Prediction

OUT_OF_SCOPE = "__out_of_scope__"  # not a valid entry id, so it never collides with one


class KnowledgeService:
    """Answers questions from a loaded knowledge base with a fitted matcher; build it with `load`."""

    def __init__(self, knowledge_base: KnowledgeBase, matcher: Matcher | None) -> None:
        self.knowledge_base = knowledge_base
        self.matcher = matcher
        self._entries = {entry.id: entry for entry in knowledge_base.entries}

    @classmethod
    def load(
        cls,
        root: str | Path | None = None,
        *,
        matcher: Matcher | None = None,
        embeddings: str | None = None,
    ) -> KnowledgeService:
        """Load the knowledge folder `root` (default: the bundled one) and fit `matcher` (default: a new one).

        `embeddings` (KNOWLEDGE_EMBEDDINGS: a sentence-transformers model name or local path) turns on
        the semantic matcher for a new matcher; None keeps the light one.
        """
        if matcher is None:
            matcher = Matcher(embedder=embedder_for(embeddings))
        return cls.from_knowledge_base(load_knowledge_base(root), matcher=matcher)

    @classmethod
    def from_knowledge_base(cls, knowledge_base: KnowledgeBase, *, matcher: Matcher | None = None) -> KnowledgeService:
        """Fit `matcher` on each entry's examples and title, its tags and answer, and the out-of-scope phrases,
        with thresholds planned for OOS_SHARE of questions out of scope (knowledge.calibration)."""
        if not knowledge_base.entries:
            return cls(knowledge_base, None)
        texts: list[str] = []
        labels: list[str] = []
        for entry in knowledge_base.entries:
            texts += [*entry.examples, entry.title]
            labels += [entry.id] * (len(entry.examples) + 1)
        texts += knowledge_base.out_of_scope
        labels += [OUT_OF_SCOPE] * len(knowledge_base.out_of_scope)
        descriptions = {entry.id: [" ".join(entry.tags), entry.answer] for entry in knowledge_base.entries}
        fitted = (matcher or Matcher()).fit(
            texts, labels, oos_label=OUT_OF_SCOPE, descriptions=descriptions, oos_share=OOS_SHARE
        )
        return cls(knowledge_base, fitted)

    def lookup(self, text: str) -> FaqResult:
        """Match `text`; ANSWER carries the entry's title and answer; never raises on any string."""
        if self.matcher is None:
            return FaqResult(Decision.UNKNOWN, 0.0)
        prediction = self.matcher.predict(text if isinstance(text, str) else "")
        return self._result(prediction)

    def answer_for(self, topic: str) -> FaqResult:
        """The answer for an entry chosen by id (a quick reply); UNKNOWN if there is no such entry."""
        entry = self._entries.get(topic)
        if entry is None:
            return FaqResult(Decision.UNKNOWN, 0.0)
        candidate = Candidate(entry.id, entry.title, 1.0)
        return FaqResult(Decision.ANSWER, 1.0, entry.id, entry.title, entry.answer, (candidate,))

    def topics(self, audience: str | None = None) -> list[Candidate]:
        """The entries for `audience` (organiser, backer, participant), or all, in file-name order."""
        return [
            Candidate(entry.id, entry.title, 1.0)
            for entry in self.knowledge_base.entries
            if audience is None or audience in entry.audience
        ]

    def entry(self, topic: str) -> FaqEntry | None:
        """The entry with this id, or None."""
        return self._entries.get(topic)

    def _result(self, prediction: Prediction) -> FaqResult:
        candidates = tuple(
            Candidate(c.label, self._entries[c.label].title, c.confidence) for c in prediction.candidates
        )
        if prediction.decision is Decision.ANSWER and prediction.label is not None:
            entry = self._entries[prediction.label]
            return FaqResult(
                Decision.ANSWER,
                prediction.confidence,
                entry.id,
                entry.title,
                entry.answer,
                candidates,
            )
        return FaqResult(prediction.decision, prediction.confidence, candidates=candidates)
