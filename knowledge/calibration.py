"""From per-candidate scores to one probability, and the answer and ask-back thresholds, all on held-out data."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

FUZZY_COLUMN = 2  # the fuzzy similarity of a candidate: what a calibrator with nothing to learn from falls back on
# The share of messages about something else that a knowledge base's thresholds plan for
# (knowledge.service): roughly one in five messages to a support bot is chit-chat or another
# company's business. The out-of-scope file's size says how many such phrases an editor wrote,
# not how often people send them.
OOS_SHARE = 0.2


class Calibrator:
    """Logistic regression from a candidate's features to P(it is the right label), fitted on held-out rows."""

    def __init__(self) -> None:
        self.mean = self.scale = self.coef = np.zeros(0)
        self.intercept = 0.0
        self.fuzzy_only = True

    def fit(self, rows: np.ndarray, right: np.ndarray) -> Calibrator:
        if len(np.unique(right)) < 2:  # nothing to tell apart (e.g. one label, no out-of-scope): fuzzy score
            return self
        std = rows.std(axis=0)
        self.mean, self.scale = rows.mean(axis=0), np.where(std > 1e-9, std, 1.0)
        model = LogisticRegression(C=1.0, max_iter=1_000).fit((rows - self.mean) / self.scale, right)
        self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])
        self.fuzzy_only = False
        return self

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        if self.fuzzy_only:
            return np.clip(rows[:, FUZZY_COLUMN], 0.0, 1.0)
        logits = ((rows - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))


def assign_folds(y: np.ndarray, *, n_folds: int, random_state: int) -> np.ndarray:
    """Stratified folds: each label's rows shuffled and dealt round the folds from a random start."""
    rng = np.random.default_rng(random_state)
    folds = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        folds[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return folds


def choose_thresholds(
    top_conf: np.ndarray,
    top_right: np.ndarray,
    listed: np.ndarray,
    *,
    is_oos: np.ndarray,
    wrong_answer_cost: float,
    fixed: tuple[float | None, float | None] = (None, None),
    oos_share: float | None = None,
) -> tuple[float, float]:
    """(answer, ask) thresholds maximising the right decisions on held-out queries.

    Per held-out query: its best candidate's confidence, whether that candidate is right, and
    whether the right label is among the candidates shown when asking back. Answering gains 1
    when right, costs `wrong_answer_cost` when wrong and 1 + that when the query is out of scope
    (which refusing would have won); asking back gains 1 when the right label is listed and costs
    0.5 otherwise. The held-out out-of-scope queries together weigh `oos_share` of the total and
    the in-scope ones the rest, however many of each the training data holds (None: every query
    counts once, as they are mixed in the training data, as in a benchmark whose training and
    test files share one mix); so adding phrases to a knowledge base's out-of-scope file teaches
    what not to answer without making the matcher shyer of the questions it knows.

    With no out-of-scope query held out, the confidence is the probability that the best candidate
    is right (the calibrator learnt from in-scope queries alone), so answering pays above
    `wrong_answer_cost / (1 + wrong_answer_cost)` and that is the answer threshold, rather than
    wherever the right or wrong luck of the few held-out queries near it puts the best cut (on
    BANKING77, 9 of 2,004 lie between 0.2 and 0.35, none right). With out-of-scope queries among
    them the confidence is the chance of being right over both kinds, which understates it for a
    query known to be in scope, so the realised gains decide.
    """
    fixed_answer, fixed_ask = fixed
    weight = _query_weights(is_oos, oos_share)
    if fixed_answer is not None:
        answer_at = fixed_answer
    elif is_oos.any():
        gain = np.where(top_right, 1.0, -wrong_answer_cost) - is_oos.astype(np.float64)
        answer_at = best_cut(top_conf, weight * gain)
    else:
        answer_at = wrong_answer_cost / (1.0 + wrong_answer_cost)
    below = top_conf < answer_at
    ask_gain = np.where(listed & ~is_oos, 1.0, -0.5)
    ask_at = best_cut(top_conf[below], weight[below] * ask_gain[below], ceiling=answer_at)
    return answer_at, min(ask_at if fixed_ask is None else fixed_ask, answer_at)


def _query_weights(is_oos: np.ndarray, oos_share: float | None) -> np.ndarray:
    n_oos = int(is_oos.sum())
    n_inscope = len(is_oos) - n_oos
    if oos_share is None or n_oos == 0 or n_inscope == 0:
        return np.full(len(is_oos), 1.0 / max(len(is_oos), 1))
    return np.where(is_oos, oos_share / n_oos, (1.0 - oos_share) / n_inscope)


def best_cut(conf: np.ndarray, gain: np.ndarray, *, ceiling: float = 1.0) -> float:
    """The threshold maximising the summed gain of the rows at or above it, midway between two confidences."""
    if len(conf) == 0:
        return ceiling
    order = np.argsort(-conf, kind="stable")
    conf, total = conf[order], np.cumsum(gain[order])
    ends = np.flatnonzero(np.append(conf[1:] < conf[:-1], True))  # last row of each run of equal confidences
    best = ends[np.argmax(total[ends])]
    if total[best] <= 0.0:
        return ceiling
    below = conf[best + 1] if best + 1 < len(conf) else 0.0
    return float(min((conf[best] + below) / 2.0, ceiling))


def heldout_report(conf: np.ndarray, right: np.ndarray, *, is_oos: np.ndarray, answer_at: float) -> dict[str, float]:
    """What the chosen answer threshold gives on the held-out queries (NaN where undefined)."""
    answered, inscope = conf >= answer_at, ~is_oos

    def share(hits: np.ndarray, among: np.ndarray) -> float:
        return float(hits[among].mean()) if among.any() else float("nan")

    return {
        "top1_accuracy": share(right, inscope),
        "accuracy": share(answered & right, inscope),
        "oos_recall": share(~answered, is_oos),
        "answered_precision": share(right, answered),
    }
