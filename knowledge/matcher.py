"""A generic intent matcher: TF-IDF + linear SVM, optional sentence embeddings, fuzzy re-scoring, one confidence."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from core.faq import Decision
from knowledge import ranking
from knowledge.calibration import (
    Calibrator,
    assign_folds,
    choose_thresholds,
    heldout_report,
)
from knowledge.embeddings import Embedder
from knowledge.scorers import ABSENT, LexicalScorer, SemanticScorer

MAX_QUERY_CHARS = 500
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format, surrogate, private, unassigned
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_MIN_FIXED, _SPELLING_CUTOFF = (
    4,
    85.0,
)  # typo correction: words this long, this similar (rapidfuzz ratio)
# Fuzzy likeness of a query to each candidate's examples: the whole text (ratio) always; the words
# in common (token_set_ratio, which forgives chatty padding around a known question) only when
# labels have few examples, as in a knowledge base: over hundreds per label it costs milliseconds.
_FUZZY_MANY: tuple[Callable[..., float], ...] = (fuzz.ratio,)
_FUZZY_FEW: tuple[Callable[..., float], ...] = (fuzz.ratio, fuzz.token_set_ratio)
_FEW_EXAMPLES = 30
_SEMANTIC_WEIGHT = 1.0  # in the ranking, each embedding score beside the lexical ones
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


@dataclass(frozen=True)
class _Data:
    """Example texts with their labels and, in the semantic mode, their embeddings."""

    texts: list[str]
    y: np.ndarray
    vectors: np.ndarray | None

    def subset(self, rows: np.ndarray) -> _Data:
        vectors = self.vectors[rows] if self.vectors is not None else None
        return _Data([self.texts[i] for i in rows], self.y[rows], vectors)


class _Base:
    """The scorers fitted on one set of examples, the examples fuzzy matching reads, and the typo corrector."""

    def __init__(
        self,
        *,
        n_classes: int,
        oos: int | None,
        top_k: int,
        c: float,
        random_state: int,
        fuzzy_scorers: tuple[Callable[..., float], ...],
        nearest_all: bool = True,
    ) -> None:
        self.n_classes, self.oos, self.top_k = n_classes, oos, top_k
        self.nearest_all = nearest_all
        self.lexical = LexicalScorer(n_classes=n_classes, c=c, random_state=random_state)
        self.semantic: SemanticScorer | None = None
        self.examples: list[str] = []
        self.bounds = np.zeros(n_classes + 1, dtype=np.int64)  # examples of class c: bounds[c]:bounds[c+1]
        self.known_words: frozenset[str] = frozenset()  # words of in-scope texts
        self.spellings: list[str] = []  # words of all texts, long enough to correct a typo towards
        self._spelled: frozenset[str] = frozenset()
        self.fuzzy_scorers = fuzzy_scorers
        self._inscope = np.ones(n_classes, dtype=bool)
        if oos is not None:
            self._inscope[oos] = False

    def fit(self, data: _Data, *, context: _Data, context_weight: float) -> _Base:
        texts, y = data.texts + context.texts, np.concatenate([data.y, context.y])
        weights = np.concatenate([np.ones(len(data.y)), np.full(len(context.y), context_weight)])
        self.lexical.fit(texts, y, weights=weights)
        if data.vectors is not None and context.vectors is not None:
            vectors = np.vstack([data.vectors, context.vectors])
            self.semantic = SemanticScorer(n_classes=self.n_classes).fit(
                vectors, y, n_examples=len(data.y), weights=weights
            )
        order = np.argsort(data.y, kind="stable")
        self.examples = [data.texts[i] for i in order]
        self.bounds = np.searchsorted(data.y[order], np.arange(self.n_classes + 1))
        inscope = [t for t, label in zip(data.texts, data.y) if label != self.oos] + context.texts
        self.known_words = frozenset(w for t in inscope for w in _WORD.findall(t))
        self.spellings = sorted({w for t in texts for w in _WORD.findall(t) if len(w) >= _MIN_FIXED})
        self._spelled = frozenset(self.spellings)
        return self

    def respell(self, query: str) -> str:
        """Each unknown word of four letters or more replaced by the closest known word, if one is close."""

        def closest(match: re.Match[str]) -> str:
            word = match.group(0)
            if len(word) < _MIN_FIXED or word in self._spelled or not self.spellings:
                return word
            best = process.extractOne(word, self.spellings, scorer=fuzz.ratio, score_cutoff=_SPELLING_CUTOFF)
            return best[0] if best is not None else word

        return _WORD.sub(closest, query)

    def candidates(self, query: str, vector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The top-k in-scope classes by combined score and, for each, its row of calibrator features."""
        words = _WORD.findall(query)
        known = sum(w in self.known_words for w in words) / len(words) if words else 0.0
        query = self.respell(query)
        scores, blend = self.lexical.scores(query), list(self.lexical.blend)
        if self.semantic is not None and vector is not None:
            semantic = self.semantic.scores(vector, nearest=self.nearest_all)
            scores, blend = (
                scores + list(semantic),
                blend + [_SEMANTIC_WEIGHT] * len(semantic),
            )
        # one scorer ranks alone; several are put on one scale first (a pass over every label each)
        combined = (
            scores[0].copy()
            if len(scores) == 1
            else sum(w * ranking.standardised(s, self._inscope) for s, w in zip(scores, blend, strict=True))
        )
        if self.oos is not None:
            combined[self.oos] = -np.inf
        top = ranking.top_k(combined, min(self.top_k, self.n_classes - (self.oos is not None)))
        columns = [np.arange(len(top)) == 0, np.full(len(top), known)]
        for scorer in self.fuzzy_scorers:
            fuzzy = self._fuzzy(query, top, scorer=scorer)
            oos_fuzzy = self._fuzzy(query, np.array([self.oos]), scorer=scorer)[0] if self.oos is not None else 0.0
            columns += [fuzzy, fuzzy - ranking.best_other(fuzzy, empty=0.0), fuzzy - oos_fuzzy]
        for score in scores:
            cand = score[top]
            oos_score = score[self.oos] if self.oos is not None else ABSENT
            columns += [cand, cand - ranking.best_other(cand, empty=ABSENT), cand - oos_score]
        if self.semantic is not None and vector is not None and not self.nearest_all:
            near = self.semantic.nearest(vector, top)
            oos_near = self.semantic.nearest(vector, np.array([self.oos]))[0] if self.oos is not None else -1.0
            columns += [near, near - ranking.best_other(near, empty=-1.0), near - oos_near]
        return top, np.clip(np.column_stack(columns).astype(np.float64), -20.0, 20.0)

    def _fuzzy(self, query: str, classes: np.ndarray, *, scorer: Callable[..., float]) -> np.ndarray:
        """Per class, the best rapidfuzz `scorer` similarity (0..1) of the query against that class's examples."""
        lengths = self.bounds[classes + 1] - self.bounds[classes]
        result = np.zeros(len(classes))
        if not query or not lengths.any():
            return result
        choices = [ex for c in classes for ex in self.examples[self.bounds[c] : self.bounds[c + 1]]]
        sims = process.cdist([query], choices, scorer=scorer, dtype=np.uint8, workers=1)[0]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        result[lengths > 0] = np.maximum.reduceat(sims, starts[lengths > 0]) / 100.0
        return result


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
        self._base: _Base | None = None
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
        data = _Data(clean, y, vectors[: len(clean)] if vectors is not None else None)
        context = _Data(
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
            data = _Data(clean, y, final[: len(clean)])
            context = _Data(context.texts, context.y, final[len(clean) :])
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
        if not _WORD.search(query) or confidence < ask_at:  # nothing to read (emoji, punctuation) or too unsure
            return Prediction(Decision.UNKNOWN, confidence, None, candidates)
        if confidence < answer_at:
            return Prediction(Decision.ASK, confidence, None, candidates)
        return Prediction(Decision.ANSWER, confidence, candidates[0].label, candidates)

    @property
    def thresholds(self) -> tuple[float, float]:
        """(answer_threshold, ask_threshold): as given to the constructor, else chosen by `fit` on held-out data."""
        return self._thresholds

    def _new_base(self, oos: int | None) -> _Base:
        return _Base(
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

    def _held_out(self, data: _Data, *, oos: int | None, context: _Data) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
