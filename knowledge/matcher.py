"""A generic intent matcher: TF-IDF + linear SVM, optional sentence embeddings, fuzzy re-scoring, one confidence."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz

from core.faq import Decision
from knowledge.calibration import (
    Calibrator,
    assign_folds,
    choose_thresholds,
    heldout_report,
)
from knowledge.candidates import WORD, Examples, Scorers
from knowledge.embeddings import Embedder

MAX_QUERY_CHARS = 500
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format, surrogate, private, unassigned
_WHITESPACE = re.compile(r"\s+")
# Fuzzy likeness of a query to each candidate's examples: the whole text (ratio) always; the words
# in common (token_set_ratio, which forgives chatty padding around a known question) only when
# labels have few examples, as in a knowledge base: over hundreds per label it costs milliseconds.
_FUZZY_MANY: tuple[Callable[..., float], ...] = (fuzz.ratio,)
_FUZZY_FEW: tuple[Callable[..., float], ...] = (fuzz.ratio, fuzz.token_set_ratio)
_FEW_EXAMPLES = 30
_MIN_TUNED = 200  # a sentence model's top is tuned from this many examples up (see Matcher._tune)
_SMALL = 3000  # up to this many examples every one is held out once (k folds); above it, one stratified fold


def normalize_text(text: str, *, max_chars: int = MAX_QUERY_CHARS) -> str:
    """NFKC, control and format characters to spaces, case-folded, whitespace collapsed, cut to `max_chars`."""
    text = unicodedata.normalize("NFKC", text[: max_chars * 2])
    if not text.isprintable():
        text = "".join(" " if unicodedata.category(ch) in _DROPPED else ch for ch in text)
    return _WHITESPACE.sub(" ", text.casefold()).strip()[:max_chars]


@dataclass(frozen=True)
class LabelScore:
    """One label and the matcher's calibrated probability that it is the right one."""

    label: str
    confidence: float


@dataclass(frozen=True)
class Prediction:
    """The verdict: `label` is set only when `decision` is ANSWER; `candidates` best first."""

    decision: Decision
    confidence: float
    label: str | None
    candidates: tuple[LabelScore, ...]


class Matcher:
    """Learns labels from example texts; `predict` answers, asks back with candidates, or does not know.

    With an `embedder` (the semantic mode) a sentence-embedding model scores every query beside the
    lexical model; the examples are encoded once per fit (the embedder may cache them on disk), and a
    sentence model that allows it has its top tuned on them (see _tune).
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        answer_threshold: float | None = None,
        ask_threshold: float | None = None,
        max_candidates: int = 3,
        wrong_answer_cost: float = 0.25,
        n_folds: int | None = None,
        top_k: int = 5,
        c: float = 1.0,
        description_weight: float = 0.5,
        random_state: int = 0,
    ) -> None:
        self.embedder = embedder
        self._fixed = (answer_threshold, ask_threshold)
        self._thresholds = (
            0.5 if answer_threshold is None else answer_threshold,
            0.2 if ask_threshold is None else ask_threshold,
        )
        self.max_candidates, self.wrong_answer_cost, self.n_folds = (
            max_candidates,
            wrong_answer_cost,
            n_folds,
        )
        self.top_k, self.c, self.description_weight, self.random_state = (
            top_k,
            c,
            description_weight,
            random_state,
        )
        self.labels: tuple[str, ...] = ()
        self.oos_label: str | None = None
        self.heldout: dict[str, float] = {}
        self._base: Scorers | None = None
        self._calibrator = Calibrator()
        self._fuzzy_scorers = _FUZZY_MANY
        self._nearest_all = True
        self._embedder: Embedder | None = None  # the embedder the last fit used

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        oos_label: str | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
        oos_share: float | None = None,
    ) -> Matcher:
        """Learn from `texts` labelled `labels`; rows labelled `oos_label` teach what not to answer.

        `descriptions` may give, per label, texts about it (tags, an answer, its name) that the
        classifiers learn from at `description_weight` but that are never held out nor fuzzy-matched.
        The thresholds and the calibration come from examples held out of the models that score them;
        `oos_share` is the share of out-of-scope questions the thresholds plan for (None: as many as
        the training data holds; see knowledge.calibration.choose_thresholds).
        """
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if all(label == oos_label for label in labels):
            raise ValueError("no in-scope example to learn from")
        clean = [normalize_text(t) for t in texts]
        self.labels = tuple(sorted(set(labels)))
        self.oos_label = oos_label if oos_label in self.labels else None
        index = {label: i for i, label in enumerate(self.labels)}
        y = np.array([index[label] for label in labels], dtype=np.int64)
        oos = index[self.oos_label] if self.oos_label is not None else None
        counts = np.bincount(y[y != oos] if oos is not None else y)
        per_label = float(np.median(counts[counts > 0]))
        self._fuzzy_scorers = _FUZZY_FEW if per_label <= _FEW_EXAMPLES else _FUZZY_MANY
        pairs = [(normalize_text(t, max_chars=20_000), label) for label, ts in (descriptions or {}).items() for t in ts]
        pairs = [(t, index[label]) for t, label in pairs if t and label in index]
        context_texts = [t for t, _ in pairs]
        # an embedder may ask for a minimum of examples (the light mode's static vectors: below it,
        # too few held-out queries to learn what their scores are worth, and the lexical scorers do better)
        wanted = self.embedder is not None and len(clean) >= self.embedder.min_examples
        self._embedder = self.embedder if wanted else None
        # An embedder may limit how many examples the nearest-example score ranks every label over
        # (the static vectors: above it, reading every example's vector costs more than the query
        # itself); beyond it that score is read for the candidates alone. Decided once per fit, so
        # every held-out model gives the calibrator the same columns.
        limit = self._embedder.nearest_limit if self._embedder is not None else None
        self._nearest_all = limit is None or len(y) <= limit
        vectors, final = self._tune(clean, y, context_texts)
        if vectors is None and self._embedder is not None:
            vectors = self._embedder.encode(clean + context_texts)
        data = Examples(clean, y, vectors[: len(clean)] if vectors is not None else None)
        context = Examples(
            context_texts,
            np.array([c for _, c in pairs], dtype=np.int64),
            vectors[len(clean) :] if vectors is not None else None,
        )
        rows, right, query_ids = self._held_out(data, oos=oos, context=context)
        self._calibrator = Calibrator().fit(rows, right)
        self._choose_thresholds(
            rows,
            right,
            query_ids=query_ids,
            is_oos=y == oos if oos is not None else None,
            oos_share=oos_share,
        )
        if final is not None:
            data = Examples(clean, y, final[: len(clean)])
            context = Examples(context.texts, context.y, final[len(clean) :])
        self._base = self._new_base(oos).fit(data, context=context, context_weight=self.description_weight)
        return self

    def predict(self, text: str) -> Prediction:
        """The verdict on one text of any length or script; never raises once fitted."""
        if self._base is None:
            raise RuntimeError("the matcher is not fitted")
        query = normalize_text(text if isinstance(text, str) else "")
        vector = None
        if self._embedder is not None:
            # an embedder that reads words one by one (the static vectors) gets the query with its
            # typos corrected, as the lexical scorers read it; a sentence model reads it as typed
            respelled = self._base.respell(query) if self._embedder.reads_respelled else query
            vector = self._embedder.encode_one(respelled)
        top, rows = self._base.candidates(query, vector)
        probs = self._calibrator.probabilities(rows)
        order = np.argsort(-probs, kind="stable")[: self.max_candidates]
        candidates = tuple(LabelScore(self.labels[top[i]], float(probs[i])) for i in order)
        confidence = candidates[0].confidence
        answer_at, ask_at = self._thresholds
        if not WORD.search(query) or confidence < ask_at:  # nothing to read (emoji, punctuation) or too unsure
            return Prediction(Decision.UNKNOWN, confidence, None, candidates)
        if confidence < answer_at:
            return Prediction(Decision.ASK, confidence, None, candidates)
        return Prediction(Decision.ANSWER, confidence, candidates[0].label, candidates)

    @property
    def thresholds(self) -> tuple[float, float]:
        """(answer_threshold, ask_threshold): as given to the constructor, else chosen by `fit` on held-out data."""
        return self._thresholds

    def _new_base(self, oos: int | None) -> Scorers:
        return Scorers(
            n_classes=len(self.labels),
            oos=oos,
            top_k=self.top_k,
            c=self.c,
            random_state=self.random_state,
            fuzzy_scorers=self._fuzzy_scorers,
            nearest_all=self._nearest_all,
        )

    def _tune(
        self, clean: list[str], y: np.ndarray, context_texts: list[str]
    ) -> tuple[np.ndarray | None, np.ndarray | None]:
        """With an embedder that can be trained (a sentence model) and enough examples: its top trained on them.

        Returns every text's vector from the model as it was, and from the tuned one; or (None, None).
        The calibrator and the thresholds learn from held-out examples scored with the model as it
        was: a model tuned on every example has seen them all, and tuning one per fold would cost
        the fit time many times over. The tuned model then scores the examples for the final
        scorers, and the queries. The out-of-scope examples are one more label to tune on, as every
        scorer learns them; descriptions are not tuned on.
        """
        if self._embedder is None or len(clean) < _MIN_TUNED:
            return None, None
        result = self._embedder.tuned(clean + context_texts, np.concatenate([y, np.full(len(context_texts), -1)]))
        if result is None:
            return None, None
        self._embedder, tuned, plain = result
        return plain, tuned

    def _held_out(
        self, data: Examples, *, oos: int | None, context: Examples
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrator rows for held-out examples' candidates, each from models that never saw the example.

        Up to `_SMALL` examples, k folds hold every example out once; above, one stratified fold
        (a fifth) is held aside, which is plenty to calibrate on and keeps the fit time down.
        """
        n = len(data.y)
        n_folds = self.n_folds or (10 if n <= _SMALL else 5)
        folds = assign_folds(data.y, n_folds=n_folds, random_state=self.random_state)
        rows: list[np.ndarray] = []
        right, query_ids = [np.zeros(0, dtype=bool)], [np.zeros(0, dtype=np.int64)]
        for fold in range(n_folds if self.n_folds or n <= _SMALL else 1):
            held, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
            if len(held) == 0 or len(train) == 0:
                continue
            base = self._new_base(oos).fit(
                data.subset(train),
                context=context,
                context_weight=self.description_weight,
            )
            for i in held:
                top, feats = base.candidates(data.texts[i], data.vectors[i] if data.vectors is not None else None)
                rows.append(feats)
                right.append(top == data.y[i])
                query_ids.append(np.full(len(top), i))
        stacked = np.vstack(rows) if rows else np.zeros((0, 1))
        return stacked, np.concatenate(right), np.concatenate(query_ids)

    def _choose_thresholds(
        self,
        rows: np.ndarray,
        right: np.ndarray,
        *,
        query_ids: np.ndarray,
        is_oos: np.ndarray | None,
        oos_share: float | None,
    ) -> None:
        """Per held-out query: its best candidate by calibrated probability; then the two thresholds."""
        probs = self._calibrator.probabilities(rows) if len(rows) else np.zeros(0)
        starts = np.flatnonzero(np.diff(query_ids, prepend=-1))
        groups = np.split(np.arange(len(query_ids)), starts[1:]) if len(query_ids) else []
        ranked = [mine[np.argsort(-probs[mine], kind="stable")] for mine in groups]
        top_conf = np.array([probs[r[0]] for r in ranked])
        top_right = np.array([right[r[0]] for r in ranked], dtype=bool)
        listed = np.array([right[r[: self.max_candidates]].any() for r in ranked], dtype=bool)
        queries = np.array([query_ids[r[0]] for r in ranked], dtype=np.int64)
        held_oos = is_oos[queries] if is_oos is not None else np.zeros(len(queries), dtype=bool)
        self._thresholds = choose_thresholds(
            top_conf,
            top_right,
            listed,
            is_oos=held_oos,
            wrong_answer_cost=self.wrong_answer_cost,
            fixed=self._fixed,
            oos_share=oos_share,
        )
        self.heldout = heldout_report(top_conf, top_right, is_oos=held_oos, answer_at=self._thresholds[0])
