"""The knowledge service behind the FaqAnswerer port, on the fixture and on the bundled knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.faq import Decision, FaqAnswerer
from knowledge.loader import BUNDLED_KNOWLEDGE_DIR
from knowledge.matcher import Matcher
from knowledge.service import KnowledgeService

FIXTURE = Path(__file__).parent / "fixtures" / "kb"
HAS_BUNDLED_CONTENT = bool(list((BUNDLED_KNOWLEDGE_DIR / "faq").glob("*.md")))


@pytest.fixture(scope="module")
def service() -> KnowledgeService:
    return KnowledgeService.load(FIXTURE)


def test_it_is_a_faq_answerer(service: KnowledgeService) -> None:
    answerer: FaqAnswerer = service
    assert answerer.lookup("refund pls").decision is Decision.ANSWER


def test_an_answer_carries_the_entry_title_and_text_with_facts(
    service: KnowledgeService,
) -> None:
    result = service.lookup("how do i get my money back")
    assert result.decision is Decision.ANSWER
    assert result.topic == "refund-request" and result.title == "How do I get a refund?"
    assert result.answer is not None and "the time shown in your refund confirmation email" in result.answer
    assert result.candidates[0].topic == "refund-request" and result.candidates[0].title == result.title
    assert result.confidence == result.candidates[0].confidence


def test_a_typo_is_still_answered(service: KnowledgeService) -> None:
    result = service.lookup("i forgot my pasword")
    assert (result.decision, result.topic) == (Decision.ANSWER, "password-reset")


@pytest.mark.parametrize(
    "text",
    ["what is the weather in paris", "tell me a joke please", "who won the rugby"],
)
def test_out_of_scope_is_not_answered(service: KnowledgeService, text: str) -> None:
    result = service.lookup(text)
    assert result.decision is not Decision.ANSWER
    assert result.topic is None and result.answer is None and result.title is None
    assert result.candidates and all(c.title for c in result.candidates)


def test_answer_for_a_topic_chosen_by_id(service: KnowledgeService) -> None:
    result = service.answer_for("payout-fees")
    assert (result.decision, result.topic, result.confidence) == (
        Decision.ANSWER,
        "payout-fees",
        1.0,
    )
    assert result.answer == "SayPro keeps 5% of the funds raised."
    assert service.answer_for("no-such-topic").decision is Decision.UNKNOWN
    assert service.answer_for("__out_of_scope__").decision is Decision.UNKNOWN


def test_an_empty_knowledge_base_knows_nothing(tmp_path: Path) -> None:
    (tmp_path / "faq").mkdir()
    service = KnowledgeService.load(tmp_path)
    result = service.lookup("anything at all")
    assert result.decision is Decision.UNKNOWN and result.candidates == () and result.confidence == 0.0


def test_a_given_matcher_is_used(tmp_path: Path) -> None:
    service = KnowledgeService.load(FIXTURE, matcher=Matcher(answer_threshold=1.0, ask_threshold=0.0))
    assert service.lookup("refund pls").decision is Decision.ASK


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=500))
def test_lookup_never_raises(service: KnowledgeService, text: str) -> None:
    result = service.lookup(text)
    assert 0.0 <= result.confidence <= 1.0
    assert (result.answer is not None) == (result.decision is Decision.ANSWER)


@pytest.mark.skipif(not HAS_BUNDLED_CONTENT, reason="the bundled content is not written yet")
def test_the_bundled_knowledge_base_answers_its_own_titles(
    bundled_knowledge: KnowledgeService,
) -> None:
    service = bundled_knowledge
    answered = [service.lookup(entry.title).topic == entry.id for entry in service.knowledge_base.entries]
    assert sum(answered) >= 0.9 * len(answered)
    assert service.lookup("tell me a joke").decision is not Decision.ANSWER


def test_topics_for_an_audience_are_the_entries_written_for_it(
    bundled_knowledge: KnowledgeService,
) -> None:
    service = bundled_knowledge
    organiser = {candidate.topic for candidate in service.topics("organiser")}
    participant = {candidate.topic for candidate in service.topics("participant")}
    assert "disbursement-timeline" in organiser and "disbursement-timeline" not in participant
    assert "contest-deadlines" in participant
    assert len(service.topics()) == 32
