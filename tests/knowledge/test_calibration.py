"""Thresholds and calibration come from held-out training data, and mean what they say."""

from __future__ import annotations

import numpy as np
import pytest

from knowledge.calibration import Calibrator, assign_folds, best_cut, choose_thresholds
from knowledge.matcher import Matcher
from tests.knowledge.test_matcher import training


def test_best_cut_keeps_the_rows_that_gain() -> None:
    conf = np.array([0.9, 0.8, 0.6, 0.3, 0.1])
    gain = np.array([1.0, 1.0, -0.5, 1.0, -3.0])
    assert best_cut(conf, gain) == pytest.approx((0.3 + 0.1) / 2)  # 0.9..0.3 sum to 2.5, the best prefix
    assert best_cut(conf, -np.ones(5), ceiling=0.7) == 0.7  # nothing gains: answer nothing
    assert best_cut(np.zeros(0), np.zeros(0), ceiling=0.4) == 0.4


def test_thresholds_split_right_from_out_of_scope_on_held_out_queries() -> None:
    # held-out queries: confident and right, unsure and right, out of scope at middling confidence
    top_conf = np.array([0.95, 0.9, 0.85, 0.4, 0.35, 0.5, 0.45, 0.3])
    top_right = np.array([True, True, True, True, True, False, False, False])
    listed = np.array([True, True, True, True, True, False, False, False])
    is_oos = np.array([False, False, False, False, False, True, True, True])
    answer_at, ask_at = choose_thresholds(top_conf, top_right, listed, is_oos=is_oos, wrong_answer_cost=0.25)
    assert 0.5 < answer_at < 0.85  # above every out-of-scope query, below the confident ones
    assert ask_at <= answer_at
    fixed = choose_thresholds(
        top_conf,
        top_right,
        listed,
        is_oos=is_oos,
        wrong_answer_cost=0.25,
        fixed=(0.6, 0.9),
    )
    assert fixed == (0.6, 0.6)  # ask never above answer


def test_without_out_of_scope_queries_the_answer_threshold_is_where_answering_stops_paying() -> None:
    # in scope only: the few queries near 0.25 happened to be wrong, though a confidence of 0.25
    # says one in four such answers is right, and at a quarter of a right one's worth per wrong
    # answer, answering at 0.25 still pays on average (0.25 - 0.25 * 0.75 > 0)
    top_conf = np.array([0.95, 0.9, 0.8, 0.27, 0.25, 0.15, 0.1])
    top_right = np.array([True, True, True, False, False, False, False])
    is_oos = np.zeros(7, dtype=bool)
    answer_at, _ = choose_thresholds(top_conf, top_right, top_right, is_oos=is_oos, wrong_answer_cost=0.25)
    assert answer_at == pytest.approx(0.25 / 1.25)  # where an answer's expected gain is 0
    # one out-of-scope query among them: the realised gains decide, and the unlucky 0.27 and 0.25 go
    with_oos = np.append(is_oos, True)
    answer_at, _ = choose_thresholds(
        np.append(top_conf, 0.05),
        np.append(top_right, False),
        np.append(top_right, False),
        is_oos=with_oos,
        wrong_answer_cost=0.25,
    )
    assert answer_at == pytest.approx((0.8 + 0.27) / 2)


def test_a_matcher_trained_without_out_of_scope_examples_answers_from_the_break_even_confidence() -> None:
    texts, labels = training(oos=False)
    with_oos = Matcher().fit(*training(), oos_label="__oos__")
    matcher = Matcher().fit(texts, labels)
    assert matcher.thresholds[0] == pytest.approx(0.25 / 1.25)
    assert with_oos.thresholds[0] != pytest.approx(0.25 / 1.25)  # there the held-out queries decide


def test_folds_are_stratified() -> None:
    y = np.repeat(np.arange(3), 10)
    folds = assign_folds(y, n_folds=5, random_state=0)
    for label in range(3):
        assert sorted(np.bincount(folds[y == label], minlength=5)) == [2] * 5


def test_the_calibrator_learns_a_probability_and_falls_back_without_contrast() -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(400, 3))
    right = rows[:, 1] + 0.3 * rng.normal(size=400) > 0
    probs = Calibrator().fit(rows, right).probabilities(rows)
    assert ((probs > 0.5) == right).mean() > 0.85
    flat = Calibrator().fit(rows, np.ones(400, dtype=bool))
    assert flat.fuzzy_only and np.all(flat.probabilities(np.full((2, 3), 0.7)) == 0.7)


def test_fit_holds_out_every_example_once_on_small_data(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, np.ndarray] = {}
    real = choose_thresholds

    def spy(top_conf: np.ndarray, *args: object, **kwargs: object) -> tuple[float, float]:
        seen["conf"] = top_conf
        return real(top_conf, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("knowledge.matcher.choose_thresholds", spy)
    texts, labels = training()
    matcher = Matcher().fit(texts, labels, oos_label="__oos__")
    assert len(seen["conf"]) == len(texts)  # one held-out verdict per training example, none from elsewhere
    assert matcher.thresholds[0] > 0.0


def test_fit_holds_aside_a_fifth_of_large_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("knowledge.matcher._SMALL", 20)
    seen: dict[str, int] = {}
    real = choose_thresholds

    def spy(top_conf: np.ndarray, *args: object, **kwargs: object) -> tuple[float, float]:
        seen["n"] = len(top_conf)
        return real(top_conf, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr("knowledge.matcher.choose_thresholds", spy)
    texts, labels = training()
    Matcher().fit(texts, labels, oos_label="__oos__")
    assert 0.15 * len(texts) <= seen["n"] <= 0.25 * len(texts)


def test_more_out_of_scope_phrases_do_not_make_the_matcher_shyer_of_what_it_knows() -> None:
    # in scope: right at 0.9 and 0.3 (a 0.3 answer still gains: 0.3 - 0.25 * 0.7 > 0);
    # out of scope at 0.2, below every right answer
    top_conf = np.array([0.9, 0.3, 0.3, 0.2])
    top_right = np.array([True, True, False, False])
    is_oos = np.array([False, False, False, True])
    once = choose_thresholds(top_conf, top_right, top_right, is_oos=is_oos, wrong_answer_cost=0.25, oos_share=0.2)
    # an editor writes the out-of-scope phrase ten times over, and one of them scores 0.3
    many = np.concatenate([top_conf, np.full(9, 0.2), [0.3]])
    many_right = np.concatenate([top_right, np.zeros(10, dtype=bool)])
    many_oos = np.concatenate([is_oos, np.ones(10, dtype=bool)])
    planned = choose_thresholds(many, many_right, many_right, is_oos=many_oos, wrong_answer_cost=0.25, oos_share=0.2)
    counted = choose_thresholds(many, many_right, many_right, is_oos=many_oos, wrong_answer_cost=0.25)
    assert once[0] == planned[0] == pytest.approx(0.25)  # still answers at 0.3
    assert counted[0] > 0.3  # counting every phrase once, the 0.3 answers would be given up
