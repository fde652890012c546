"""The matcher: normalisation, answers, refusals, typos, hostile input, and any labelled data."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.faq import Decision
from knowledge.matcher import MAX_QUERY_CHARS, Matcher, normalize_text

TOPICS = {
    "refund": [
        "how do i get my money back",
        "i want a refund for my donation",
        "refund pls",
        "can i cancel my contribution and be refunded",
        "please return the money i donated",
        "how long does a refund take",
        "the campaign was cancelled will i be refunded",
    ],
    "password": [
        "i forgot my password",
        "how do i reset my password",
        "i cant log in to my account",
        "locked out of my account",
        "password reset link not arriving",
        "how to change my login password",
    ],
    "prizes": [
        "what can i win in the contest",
        "what are the prizes",
        "how much is first prize",
        "is there a prize for the runner up",
        "do winners get cash or vouchers",
        "what does the winner get",
    ],
    "fees": [
        "what fees does saypro charge organisers",
        "how much commission do you take",
        "is there a platform fee on donations",
        "why is my payout less than what we raised",
        "are there withdrawal charges",
        "what percentage do you keep",
    ],
}
OUT_OF_SCOPE = [
    "whats the weather like today",
    "will it rain tomorrow",
    "who won the soccer match last night",
    "tell me a joke",
    "what is the capital of france",
    "how do i make pancakes",
    "recommend a good movie",
    "what is 12 times 7",
    "who is the president",
    "my phone screen is cracked",
    "should i buy bitcoin",
    "sing me a song",
    "what time does the mall close",
    "how old are you",
    "is the highway closed today",
    "best places to visit on holiday",
    "what should i name my dog",
    "translate hello into french",
]


def training(*, oos: bool = True) -> tuple[list[str], list[str]]:
    texts = [t for examples in TOPICS.values() for t in examples]
    labels = [label for label, examples in TOPICS.items() for _ in examples]
    if oos:
        texts += OUT_OF_SCOPE
        labels += ["__oos__"] * len(OUT_OF_SCOPE)
    return texts, labels


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    texts, labels = training()
    return Matcher().fit(texts, labels, oos_label="__oos__")


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("  Hello   World  ", "hello world"),
        ("ＲＥＦＵＮＤ", "refund"),  # full-width letters, NFKC
        ("ﬁne", "fine"),  # ligature
        ("a\x00b\x07c", "a b c"),  # control characters
        ("tab\tand\nnew line\r\n", "tab and new line"),
        ("zero\u200bwidth", "zero width"),  # format character
        ("STRASSE Straße", "strasse strasse"),  # case-folded
        ("", ""),
    ],
)
def test_normalize_text(raw: str, clean: str) -> None:
    assert normalize_text(raw) == clean


def test_normalize_text_cuts_long_input() -> None:
    assert len(normalize_text("word " * 10_000)) <= MAX_QUERY_CHARS
    assert normalize_text("x" * 50, max_chars=10) == "x" * 10


def test_a_known_question_is_answered(matcher: Matcher) -> None:
    for label, examples in TOPICS.items():
        prediction = matcher.predict(examples[0])
        assert prediction.decision is Decision.ANSWER, (examples[0], prediction)
        assert prediction.label == label == prediction.candidates[0].label


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("i forgot my pasword", "password"),
        ("how do i reset my passwrd", "password"),
        ("refnd my donaton", "refund"),
        ("what are the prizess", "prizes"),
        ("how much comission do you take", "fees"),
    ],
)
def test_typos_still_match(matcher: Matcher, text: str, label: str) -> None:
    prediction = matcher.predict(text)
    assert prediction.candidates[0].label == label
    assert prediction.decision is Decision.ANSWER, prediction


@pytest.mark.parametrize(
    "text",
    [
        "what is the weather in paris",
        "tell me a joke please",
        "who won the rugby",
        "recommend a series to watch",
    ],
)
def test_out_of_scope_phrases_are_not_answered(matcher: Matcher, text: str) -> None:
    prediction = matcher.predict(text)
    assert prediction.decision is not Decision.ANSWER and prediction.label is None, prediction


def test_candidates_are_best_first_in_scope_and_bounded(matcher: Matcher) -> None:
    prediction = matcher.predict("money back for my prize")
    confidences = [c.confidence for c in prediction.candidates]
    assert 1 <= len(prediction.candidates) <= 3
    assert confidences == sorted(confidences, reverse=True)
    assert prediction.confidence == confidences[0]
    assert all(c.label in TOPICS for c in prediction.candidates)


def test_thresholds_are_chosen_on_held_out_examples(matcher: Matcher) -> None:
    answer_at, ask_at = matcher.thresholds
    assert 0.0 <= ask_at <= answer_at <= 1.0
    assert set(matcher.heldout) == {
        "top1_accuracy",
        "accuracy",
        "oos_recall",
        "answered_precision",
    }
    assert 0.0 <= matcher.heldout["oos_recall"] <= 1.0


def test_ask_sits_between_the_two_thresholds() -> None:
    texts, labels = training()
    matcher = Matcher(answer_threshold=1.0, ask_threshold=0.0).fit(texts, labels, oos_label="__oos__")
    assert matcher.thresholds == (1.0, 0.0)
    prediction = matcher.predict("refund pls")
    assert prediction.decision is Decision.ASK and prediction.label is None and len(prediction.candidates) == 3


def test_fitting_is_deterministic() -> None:
    texts, labels = training()
    first = Matcher().fit(texts, labels, oos_label="__oos__")
    second = Matcher().fit(texts, labels, oos_label="__oos__")
    assert first.thresholds == second.thresholds
    for text in ["refund pls", "what is the weather", "prize for my password"]:
        assert first.predict(text) == second.predict(text)


def test_descriptions_teach_words_the_examples_lack() -> None:
    texts, labels = training()
    plain = Matcher().fit(texts, labels, oos_label="__oos__")
    described = Matcher().fit(
        texts,
        labels,
        oos_label="__oos__",
        descriptions={"fees": ["Transaction costs are itemised on statements."]},
    )
    query = "itemised transaction costs"

    def fees_confidence(matcher: Matcher) -> float:
        return next(
            (c.confidence for c in matcher.predict(query).candidates if c.label == "fees"),
            0.0,
        )

    assert described.predict(query).candidates[0].label == "fees"
    assert fees_confidence(described) > fees_confidence(plain)


def test_works_on_any_labelled_data_without_out_of_scope() -> None:
    texts, labels = training(oos=False)
    matcher = Matcher().fit(texts, labels)
    assert matcher.oos_label is None
    assert matcher.predict("how do i reset my password").label == "password"


@pytest.mark.parametrize("n_labels", [1, 2])
def test_one_or_two_labels_do_not_break_it(n_labels: int) -> None:
    chosen = list(TOPICS)[:n_labels]
    texts = [t for label in chosen for t in TOPICS[label]]
    labels = [label for label in chosen for _ in TOPICS[label]]
    matcher = Matcher().fit(texts, labels)
    prediction = matcher.predict(TOPICS[chosen[-1]][0])
    assert prediction.candidates[0].label == chosen[-1]
    assert 0.0 <= prediction.confidence <= 1.0


def test_a_single_example_is_enough_to_fit() -> None:
    prediction = Matcher().fit(["hello there"], ["greeting"]).predict("hello")
    assert prediction.candidates[0].label == "greeting"


def test_bad_training_data_is_refused() -> None:
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        Matcher().fit(["a", "b"], ["x"])
    with pytest.raises(ValueError, match="no in-scope"):
        Matcher().fit(["a", "b"], ["oos", "oos"], oos_label="oos")
    with pytest.raises(ValueError, match="empty"):
        Matcher().fit(["", "  "], ["x", "y"])


def test_an_unfitted_matcher_says_so() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        Matcher().predict("hello")


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "\x00",
        "😀😀😀",
        "?!?!",
        "a" * 20_000,
        "refund " * 5_000,
        "пароль забыл",
        "忘记密码了",
        "refund 😀 пароль 密码 كلمة السر",
        "\ud800",
        "\U0010ffff",
        "\u202etxet desrever",
        "ＲＥＦＵＮＤ ｐｌｓ",
    ],
)
def test_hostile_strings_get_a_verdict(matcher: Matcher, text: str) -> None:
    prediction = matcher.predict(text)
    assert 0.0 <= prediction.confidence <= 1.0 and prediction.candidates


@pytest.mark.parametrize("text", ["", "   ", "😀😀😀", "?!?!", "\x00\x01"])
def test_nothing_to_read_is_never_answered(matcher: Matcher, text: str) -> None:
    assert matcher.predict(text).decision is Decision.UNKNOWN


def test_long_input_is_matched_on_its_beginning(matcher: Matcher) -> None:
    prediction = matcher.predict("i forgot my password " + "x" * 20_000)
    assert prediction.candidates[0].label == "password"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=2_000))
def test_any_text_never_raises_and_confidence_is_a_probability(matcher: Matcher, text: str) -> None:
    prediction = matcher.predict(text)
    assert prediction.decision in set(Decision)
    assert 0.0 <= prediction.confidence <= 1.0 and not math.isnan(prediction.confidence)
    assert all(0.0 <= c.confidence <= 1.0 for c in prediction.candidates)
    assert (prediction.label is not None) == (prediction.decision is Decision.ANSWER)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=50).map(lambda s: s * 400))
def test_long_repetitive_text_never_raises(matcher: Matcher, text: str) -> None:
    assert 0.0 <= matcher.predict(text).confidence <= 1.0
