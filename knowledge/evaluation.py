"""Scores a matcher or the knowledge service on labelled questions: pure functions behind `knowledge eval` and `bench`."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from core.faq import Decision, FaqResult
from knowledge.embeddings import Embedder
from knowledge.features import label_words
from knowledge.matcher import Matcher, Prediction

_OOS_TRAIN_LABEL = "\0out-of-scope"
_LABEL_COLUMNS = ("topic", "category")


class LabelledRow(NamedTuple):
    """One question and its label; an empty label means out of scope."""

    text: str
    label: str


class Progress(Protocol):
    """Told what the benchmark is doing: `phase` "fit" (total None) or "score" (`done` of `total` rows)."""

    def __call__(self, phase: str, done: int, total: int | None) -> None: ...


class _Answerer(Protocol):
    def lookup(self, text: str) -> FaqResult: ...


class _Verdict(NamedTuple):
    answered: str | None  # the label answered, None when the model asked back or did not know
    top: str | None  # the best candidate, answered or not
    confidence: float


def read_labelled_csv(path: str | Path, *, label_column: str | None = None) -> list[LabelledRow]:
    """Rows of a CSV with a `text` column and one label column (`topic`, `category` or the only other one).

    Raises ValueError (the message gives the line where it applies) on a file that is not such a CSV.
    """
    with Path(path).open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            column = _label_column(reader.fieldnames or [], label_column)
            return [LabelledRow((row["text"] or "").strip(), (row[column] or "").strip()) for row in reader]
        except csv.Error as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"after line {reader.line_num}: not valid UTF-8") from exc


def _label_column(fields: Sequence[str], wanted: str | None) -> str:
    if "text" not in fields:
        raise ValueError("line 1: no 'text' column")
    if wanted is not None:
        if wanted not in fields:
            raise ValueError(f"line 1: no '{wanted}' column")
        return wanted
    for name in _LABEL_COLUMNS:
        if name in fields:
            return name
    others = [f for f in fields if f != "text"]
    if len(others) != 1:
        raise ValueError(f"line 1: cannot tell the label column among {others}; name it 'topic' or 'category'")
    return others[0]


def evaluate(
    model: Matcher | _Answerer,
    rows: Iterable[LabelledRow],
    *,
    oos_label: str | None = None,
) -> dict[str, object]:
    """n, accuracy (in-scope rows answered right), oos_recall (out-of-scope rows not answered), answered_precision."""
    rows = list(rows)
    verdicts = [_verdict(model, row.text) for row in rows]
    return _scores(rows, verdicts, oos_label=oos_label)


def bench(
    train_rows: Sequence[LabelledRow],
    test_rows: Sequence[LabelledRow],
    *,
    shots: int | None = None,
    oos_label: str | None = None,
    embedder: Embedder | None = None,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Fit a fresh matcher on `train_rows` (the first `shots` per label if given) and score it on `test_rows`.

    The matcher is the bot's, learning also from each label's name as words. Latency is measured one
    query at a time, as the bot answers them. `progress` hears of the fit and of each scored row.
    """
    train = _first_per_label(train_rows, shots) if shots is not None else list(train_rows)
    texts = [row.text for row in train]
    labels = [_OOS_TRAIN_LABEL if _is_oos(row.label, oos_label) else row.label for row in train]
    # sorted: the same files give the same texts in the same order, so the embedding cache's
    # content key (over every text in order) matches from one run to the next
    names = {label: [label_words(label)] for label in sorted(set(labels)) if label != _OOS_TRAIN_LABEL}
    if progress is not None:
        progress("fit", 0, None)
    started = time.perf_counter()
    matcher = Matcher(embedder=embedder).fit(texts, labels, oos_label=_OOS_TRAIN_LABEL, descriptions=names)
    fit_seconds = time.perf_counter() - started
    verdicts: list[_Verdict] = []
    latencies: list[float] = []
    with threadpool_limits(limits=1):
        for done, row in enumerate(test_rows, start=1):
            started = time.perf_counter()
            prediction = matcher.predict(row.text)
            latencies.append((time.perf_counter() - started) * 1000.0)
            verdicts.append(_from_prediction(prediction))
            if progress is not None:
                progress("score", done, len(test_rows))
    scores = _scores(list(test_rows), verdicts, oos_label=oos_label)
    correct = [v.top is not None and v.top == row.label for row, v in zip(test_rows, verdicts)]
    return {
        "n_train": len(train),
        "n_test": len(test_rows),
        "accuracy": scores["accuracy"],
        "oos_recall": scores["oos_recall"],
        "answered_precision": scores["answered_precision"],
        "ece": expected_calibration_error([v.confidence for v in verdicts], correct),
        "fit_seconds": round(fit_seconds, 3),
        "latency_ms_p50": _percentile(latencies, 50),
        "latency_ms_p95": _percentile(latencies, 95),
    }


def expected_calibration_error(
    confidences: Sequence[float], correct: Sequence[bool], *, bins: int = 10
) -> float | None:
    """Weighted mean gap between confidence and accuracy over `bins` equal-width confidence bins."""
    if not confidences:
        return None
    conf = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
    right = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    gap = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            gap += mask.mean() * abs(right[mask].mean() - conf[mask].mean())
    return float(gap)


def _scores(rows: Sequence[LabelledRow], verdicts: Sequence[_Verdict], *, oos_label: str | None) -> dict[str, object]:
    inscope_hits = oos_refused = answered = answered_right = n_inscope = n_oos = 0
    for row, verdict in zip(rows, verdicts):
        oos = _is_oos(row.label, oos_label)
        right = not oos and verdict.answered == row.label
        n_oos += oos
        n_inscope += not oos
        oos_refused += oos and verdict.answered is None
        inscope_hits += right
        answered += verdict.answered is not None
        answered_right += right
    return {
        "n": len(rows),
        "accuracy": inscope_hits / n_inscope if n_inscope else None,
        "oos_recall": oos_refused / n_oos if n_oos else None,
        "answered_precision": answered_right / answered if answered else None,
    }


def _is_oos(label: str, oos_label: str | None) -> bool:
    return not label or (oos_label is not None and label == oos_label)


def _verdict(model: Matcher | _Answerer, text: str) -> _Verdict:
    if isinstance(model, Matcher):
        return _from_prediction(model.predict(text))
    result = model.lookup(text)
    answered = result.topic if result.decision is Decision.ANSWER else None
    top = result.candidates[0].topic if result.candidates else None
    return _Verdict(answered, top, result.confidence)


def _from_prediction(prediction: Prediction) -> _Verdict:
    answered = prediction.label if prediction.decision is Decision.ANSWER else None
    top = prediction.candidates[0].label if prediction.candidates else None
    return _Verdict(answered, top, prediction.confidence)


def _first_per_label(rows: Sequence[LabelledRow], shots: int) -> list[LabelledRow]:
    seen: dict[str, int] = {}
    kept = []
    for row in rows:
        if seen.get(row.label, 0) < shots:
            seen[row.label] = seen.get(row.label, 0) + 1
            kept.append(row)
    return kept


def _percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None
