"""A small, predictable knowledge base for dialogue tests: verdicts chosen by keyword."""

from __future__ import annotations

from core.faq import Candidate, Decision, FaqResult

TOPICS = {
    "disbursement-timeline": ("When are funds paid out?", "organiser", "Payouts are sent after the campaign ends."),
    "disbursement-status-howto": ("Tracking a payout", "organiser", "Open your dashboard to track the payout."),
    "refund-request": ("Getting a refund", "backer", "Ask for a refund from your contribution page."),
    "contest-deadlines": ("Contest deadlines", "participant", "Deadlines are in the contest rules."),
    "contact-support": ("Contacting support", "backer", "Email support@example.org."),
}


class FakeKnowledge:
    """`payout` answers, `refundish` asks back, anything else is unknown; `boom` raises."""

    def lookup(self, text: str) -> FaqResult:
        lowered = text.lower()
        if "boom" in lowered:
            raise ValueError("a matcher bug")
        if "payout" in lowered and "track" in lowered:
            return self.answer_for("disbursement-status-howto")
        if "payout" in lowered:
            return self.answer_for("disbursement-timeline")
        if "refundish" in lowered:
            candidates = tuple(
                Candidate(t, TOPICS[t][0], c) for t, c in (("refund-request", 0.4), ("contact-support", 0.3))
            )
            return FaqResult(decision=Decision.ASK, confidence=0.4, candidates=candidates)
        return FaqResult(decision=Decision.UNKNOWN, confidence=0.1)

    def answer_for(self, topic: str) -> FaqResult:
        if topic not in TOPICS:
            return FaqResult(decision=Decision.UNKNOWN, confidence=0.0)
        title, _audience, answer = TOPICS[topic]
        return FaqResult(
            decision=Decision.ANSWER,
            confidence=1.0,
            topic=topic,
            title=title,
            answer=answer,
            candidates=(Candidate(topic, title, 1.0),),
        )

    def topics(self, audience: str | None = None) -> list[Candidate]:
        return [Candidate(t, title, 1.0) for t, (title, who, _a) in TOPICS.items() if audience in (None, who)]
