"""The `ask --json` view of one matcher verdict, as the interface page fixes its keys."""

from __future__ import annotations

from core.faq import Decision, FaqAnswerer


def ask_payload(knowledge: FaqAnswerer, text: str) -> dict[str, object]:
    """`{"topic", "confidence", "answer", "alternatives"}`; `topic` is None when the bot would not answer."""
    result = knowledge.lookup(text)
    answered = result.decision is Decision.ANSWER
    topic = result.topic if answered else None
    alternatives = [
        {"topic": candidate.topic, "confidence": round(candidate.confidence, 4)}
        for candidate in result.candidates
        if candidate.topic != topic
    ][:3]
    return {
        "topic": topic,
        "confidence": round(result.confidence, 4),
        "answer": result.answer if answered else None,
        "alternatives": alternatives,
    }
