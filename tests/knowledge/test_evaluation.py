"""Evaluation: reading labelled CSVs, the eval arithmetic on a hand-computed case, and the benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest
from rapidfuzz import fuzz, process

from core.faq import Candidate, Decision, FaqResult
from knowledge.evaluation import (
    LabelledRow,
    bench,
    evaluate,
    expected_calibration_error,
    read_labelled_csv,
)
from knowledge.loader import BUNDLED_KNOWLEDGE_DIR, load_knowledge_base
from knowledge.matcher import Matcher, normalize_text
from knowledge.service import KnowledgeService

ROOT = Path(__file__).resolve().parents[2]
EVAL_FILE = ROOT / "tests" / "data" / "eval_questions.csv"


class ScriptedAnswerer:
    """Answers each text with the verdict written for it."""

    def __init__(self, verdicts: dict[str, tuple[Decision, str]]) -> None:
        self.verdicts = verdicts

    def lookup(self, text: str) -> FaqResult:
        decision, topic = self.verdicts[text]
        candidates = (Candidate(topic, topic.title(), 0.5),)
        if decision is Decision.ANSWER:
            return FaqResult(decision, 0.9, topic, topic.title(), "answer", candidates)
        return FaqResult(decision, 0.3, candidates=candidates)


def test_evaluate_on_a_hand_computed_case() -> None:
    answerer = ScriptedAnswerer(
        {
            "right": (Decision.ANSWER, "refund"),
            "wrong": (Decision.ANSWER, "fees"),
            "asked": (Decision.ASK, "refund"),
            "unknown": (Decision.UNKNOWN, "refund"),
            "joke": (
                Decision.ANSWER,
                "fees",
            ),  # out of scope, answered: a miss and a wrong answer
            "weather": (Decision.ASK, "fees"),  # out of scope, asked back: not answered
            "sport": (Decision.UNKNOWN, "fees"),
        }
    )
    rows = [
        LabelledRow("right", "refund"),
        LabelledRow("wrong", "refund"),
        LabelledRow("asked", "refund"),
        LabelledRow("unknown", "refund"),
        LabelledRow("joke", ""),
        LabelledRow("weather", ""),
        LabelledRow("sport", ""),
    ]
    assert evaluate(answerer, rows) == {
        "n": 7,
        "accuracy": 1 / 4,  # a wrong answer and both refusals are misses
        "oos_recall": 2 / 3,  # ASK and UNKNOWN both count as not answered
        "answered_precision": 1 / 3,  # right, wrong, joke answered; only one right
    }


def test_evaluate_says_none_where_a_share_is_undefined() -> None:
    answerer = ScriptedAnswerer({"a": (Decision.UNKNOWN, "x")})
    assert evaluate(answerer, [LabelledRow("a", "x")]) == {
        "n": 1,
        "accuracy": 0.0,
        "oos_recall": None,
        "answered_precision": None,
    }
    assert evaluate(answerer, []) == {
        "n": 0,
        "accuracy": None,
        "oos_recall": None,
        "answered_precision": None,
    }


def test_evaluate_takes_a_matcher_and_an_out_of_scope_label() -> None:
    texts = [
        "refund my money",
        "give my money back",
        "reset my password",
        "forgot my password",
        "tell a joke",
        "a joke",
    ]
    labels = ["refund", "refund", "password", "password", "oos", "oos"]
    matcher = Matcher(answer_threshold=0.0, ask_threshold=0.0).fit(texts, labels, oos_label="oos")
    rows = [
        LabelledRow("refund my money please", "refund"),
        LabelledRow("tell me a joke", "oos"),
    ]
    result = evaluate(matcher, rows, oos_label="oos")
    assert result["n"] == 2 and result["accuracy"] == 1.0
    assert result["oos_recall"] == 0.0  # with a zero threshold everything with words is answered


def test_read_labelled_csv_finds_the_label_column(tmp_path: Path) -> None:
    topic = tmp_path / "topic.csv"
    topic.write_text(
        '\ufefftext,topic\n"hello, there",greeting\n  tell me a joke ,\n',
        encoding="utf-8",
    )
    assert read_labelled_csv(topic) == [
        LabelledRow("hello, there", "greeting"),
        LabelledRow("tell me a joke", ""),
    ]
    category = tmp_path / "category.csv"
    category.write_text("category,text\ncard,where is my card\n")
    assert read_labelled_csv(category) == [LabelledRow("where is my card", "card")]
    other = tmp_path / "other.csv"
    other.write_text("text,intent\nhi,greet\n")
    assert read_labelled_csv(other) == [LabelledRow("hi", "greet")]
    both = tmp_path / "both.csv"
    both.write_text("text,topic,category\nhi,a,b\n")
    assert read_labelled_csv(both, label_column="category") == [LabelledRow("hi", "b")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("question,topic\nhi,a\n", "no 'text' column"),
        ("text,a,b\nhi,1,2\n", "cannot tell the label column"),
        ("text\nhi\n", "cannot tell the label column"),
    ],
)
def test_read_labelled_csv_refuses_what_it_cannot_read(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        read_labelled_csv(path)


def test_read_labelled_csv_refuses_a_missing_named_column(tmp_path: Path) -> None:
    path = tmp_path / "few.csv"
    path.write_text("text,topic\nhi,a\n")
    with pytest.raises(ValueError, match="no 'label' column"):
        read_labelled_csv(path, label_column="label")


def test_expected_calibration_error_by_hand() -> None:
    # bin 9: conf 0.9 and 0.95, one right -> |0.5 - 0.925| * 2/4; bin 2: conf 0.2 twice, both wrong -> 0.2 * 2/4
    assert expected_calibration_error([0.9, 0.95, 0.2, 0.2], [True, False, False, False]) == pytest.approx(
        0.425 * 0.5 + 0.2 * 0.5
    )
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert expected_calibration_error([], []) is None


def synthetic(n_per_label: int, *, offset: int = 0) -> list[LabelledRow]:
    words = {
        "card": "card arrived delivery",
        "transfer": "transfer bank sent",
        "pin": "pin code blocked",
    }
    rows = [
        LabelledRow(
            f"{words[label].split()[i % 3]} question {i + offset} {words[label].split()[(i + 1) % 3]}",
            label,
        )
        for i in range(n_per_label)
        for label in words
    ]
    return rows + [LabelledRow(f"weather joke {i + offset}", "oos") for i in range(n_per_label)]


def test_bench_reports_the_interface_keys() -> None:
    result = bench(synthetic(12), synthetic(4, offset=100), oos_label="oos")
    assert set(result) == {
        "n_train",
        "n_test",
        "accuracy",
        "oos_recall",
        "answered_precision",
        "ece",
        "fit_seconds",
        "latency_ms_p50",
        "latency_ms_p95",
    }
    assert (result["n_train"], result["n_test"]) == (48, 16)
    assert result["accuracy"] == 1.0 and result["oos_recall"] == 1.0
    for key in ("answered_precision", "ece"):
        assert 0.0 <= result[key] <= 1.0  # type: ignore[operator]
    assert 0.0 < result["latency_ms_p50"] <= result["latency_ms_p95"]  # type: ignore[operator]


def test_bench_keeps_the_first_shots_per_label_and_no_oos_recall_without_oos_rows() -> None:
    train = synthetic(12)
    result = bench(train, [row for row in synthetic(3, offset=100) if row.label != "oos"], shots=5)
    assert result["n_train"] == 5 * 4  # three labels and the "oos" label, which is just a label here
    assert result["oos_recall"] is None and result["n_test"] == 9


@pytest.mark.skipif(not EVAL_FILE.exists(), reason="the evaluation questions are not written yet")
def test_the_bundled_knowledge_base_holds_its_ground_on_the_eval_questions(
    bundled_knowledge: KnowledgeService,
) -> None:
    if not list((BUNDLED_KNOWLEDGE_DIR / "faq").glob("*.md")):
        pytest.skip("the bundled content is not written yet")
    result = evaluate(bundled_knowledge, read_labelled_csv(EVAL_FILE))
    # The targets (accuracy in scope 0.90, out-of-scope recall 0.85); the light matcher's figures on
    # the current content are 0.920 and 0.902.
    assert result["oos_recall"] >= 0.85  # type: ignore[operator]
    assert result["accuracy"] >= 0.90  # type: ignore[operator]
    assert result["answered_precision"] >= 0.90  # type: ignore[operator]


@pytest.mark.skipif(not EVAL_FILE.exists(), reason="the evaluation questions are not written yet")
def test_no_eval_question_is_copied_into_the_knowledge_base() -> None:
    """The eval file measures questions the matcher has not seen: none of them, nor a near copy
    (rapidfuzz ratio 90 or more after normalising), is an example, title or out-of-scope phrase."""
    knowledge_base = load_knowledge_base()
    known = [normalize_text(text) for entry in knowledge_base.entries for text in (*entry.examples, entry.title)]
    known += [normalize_text(text) for text in knowledge_base.out_of_scope]
    copies = []
    for row in read_labelled_csv(EVAL_FILE):
        question = normalize_text(row.text)
        match = process.extractOne(question, known, scorer=fuzz.ratio, score_cutoff=90)
        if match is not None:
            copies.append((row.text, match[0]))
    assert copies == []
