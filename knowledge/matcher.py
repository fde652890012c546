"""A generic intent matcher: TF-IDF n-grams, a linear SVM and fuzzy re-scoring, one calibrated confidence."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from core.faq import Decision

MAX_QUERY_CHARS = 500
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn"})  # control, format, surrogate, private, unassigned
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile(r"\w+")
_ABSENT = -10.0  # the SVM score of a label that a fold never saw
_N_META = 8
_MIN_FIXED, _SPELLING_CUTOFF = 4, 85.0  # typo correction: words this long, this similar (rapidfuzz ratio)


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
class _Context:
    """Texts that describe labels (tags, answers): always learnt from, never held out nor fuzzy-matched."""

    texts: list[str]
    y: np.ndarray
    weight: float


class _Features:
    """Word 1-2-grams and char_wb 2-5-grams, each TF-IDF weighted (sublinear tf) and L2-normalised."""

    def __init__(self) -> None:
        self._word = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, lowercase=False, token_pattern=r"(?u)\b\w+\b", dtype=np.float32
        )
        self._char = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, lowercase=False, dtype=np.float32
        )
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, int], np.ndarray, int]] = []

    def fit_transform(self, texts: list[str]) -> sparse.csr_matrix:
        blocks, fitted = [], []
        for vectorizer in (self._word, self._char):
            try:
                blocks.append(vectorizer.fit_transform(texts))
            except ValueError:  # no word (or no character) at all in the texts: go without that part
                continue
            fitted.append(vectorizer)
        if not blocks:
            raise ValueError("the training texts are all empty")
        offset = 0
        for vectorizer in fitted:
            analyzer, vocabulary = vectorizer.build_analyzer(), vectorizer.vocabulary_
            self._parts.append((analyzer, vocabulary, vectorizer.idf_.astype(np.float64), offset))
            offset += len(vocabulary)
        return sparse.hstack(blocks, format="csr")

    def transform_one(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """The vector sklearn would give `text`, as (column indices, values), without sklearn's per-call cost."""
        indices, values = [], []
        for analyze, vocabulary, idf, offset in self._parts:
            counts = Counter(vocabulary[g] for g in analyze(text) if g in vocabulary)
            if counts:
                idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
                tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
                val = tf * idf[idx]
                indices.append(idx + offset)
                values.append(val / np.sqrt(val @ val))
        if not indices:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        return np.concatenate(indices), np.concatenate(values)


class _Base:
    """Features, a one-vs-rest linear SVM and the examples that fuzzy matching reads."""

    def __init__(self, *, n_classes: int, oos: int | None, top_k: int, c: float, random_state: int) -> None:
        self.n_classes, self.oos, self.top_k, self.c, self.random_state = n_classes, oos, top_k, c, random_state
        self.features = _Features()
        self.weights = np.zeros((0, n_classes), dtype=np.float32)  # features x classes
        self.bias = np.full(n_classes, _ABSENT, dtype=np.float32)
        self.examples: list[str] = []
        self.bounds = np.zeros(n_classes + 1, dtype=np.int64)  # examples of class c: bounds[c]:bounds[c+1]
        self.known_words: frozenset[str] = frozenset()  # words of in-scope texts
        self.spellings: list[str] = []  # words of all texts, long enough to correct a typo towards
        self._spelled: frozenset[str] = frozenset()

    def fit(self, texts: list[str], y: np.ndarray, *, context: _Context) -> _Base:
        x = self.features.fit_transform(texts + context.texts)
        y_all = np.concatenate([y, context.y])
        present = np.unique(y_all)
        weights = np.zeros((self.n_classes, x.shape[1]), dtype=np.float32)
        if len(present) >= 2:
            svm = LinearSVC(C=self.c, max_iter=10_000, random_state=self.random_state)
            svm.fit(x, y_all, sample_weight=np.concatenate([np.ones(len(y)), np.full(len(context.y), context.weight)]))
            coef, icpt = svm.coef_, svm.intercept_
            if len(present) == 2:  # sklearn keeps one row for two classes: the second one's score
                coef, icpt = np.vstack([-coef, coef]), np.concatenate([-icpt, icpt])
            weights[present], self.bias[present] = coef, icpt
        else:
            self.bias[present] = 0.0
        self.weights = np.ascontiguousarray(weights.T)
        order = np.argsort(y, kind="stable")
        self.examples = [texts[i] for i in order]
        self.bounds = np.searchsorted(y[order], np.arange(self.n_classes + 1))
        inscope = [t for t, label in zip(texts, y) if label != self.oos] + context.texts
        self.known_words = frozenset(w for t in inscope for w in _WORD.findall(t))
        self.spellings = sorted({w for t in texts + context.texts for w in _WORD.findall(t) if len(w) >= _MIN_FIXED})
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

    def candidates(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """The top-k in-scope classes by SVM score and, for each, its row of calibrator features."""
        words = _WORD.findall(query)
        known = sum(w in self.known_words for w in words) / len(words) if words else 0.0
        query = self.respell(query)
        idx, val = self.features.transform_one(query)
        scores = val @ self.weights[idx] + self.bias
        inscope = scores.copy()
        if self.oos is not None:
            inscope[self.oos] = -np.inf
        k = min(self.top_k, self.n_classes - (self.oos is not None))
        top = np.argpartition(-inscope, k - 1)[:k] if k < self.n_classes else np.arange(self.n_classes)
        top = top[np.argsort(-inscope[top], kind="stable")][:k]
        fuzzy = self._fuzzy(query, top)
        oos_score, oos_fuzzy = _ABSENT, 0.0
        if self.oos is not None:
            oos_score, oos_fuzzy = scores[self.oos], self._fuzzy(query, np.array([self.oos]))[0]
        cand = inscope[top].astype(np.float64)
        rows = np.column_stack([
            cand,
            cand - _best_other(cand, empty=_ABSENT),
            cand - oos_score,
            fuzzy,
            fuzzy - _best_other(fuzzy, empty=0.0),
            fuzzy - oos_fuzzy,
            np.arange(len(top)) == 0,
            np.full(len(top), known),
        ])
        return top, np.clip(rows, -20.0, 20.0)

    def _fuzzy(self, query: str, classes: np.ndarray) -> np.ndarray:
        """Per class, the best rapidfuzz ratio (0..1) of the query against that class's examples."""
        lengths = self.bounds[classes + 1] - self.bounds[classes]
        result = np.zeros(len(classes))
        if not query or not lengths.any():
            return result
        choices = [ex for c in classes for ex in self.examples[self.bounds[c]: self.bounds[c + 1]]]
        sims = process.cdist([query], choices, scorer=fuzz.ratio, dtype=np.uint8, workers=1)[0]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        result[lengths > 0] = np.maximum.reduceat(sims, starts[lengths > 0]) / 100.0
        return result


def _best_other(values: np.ndarray, *, empty: float) -> np.ndarray:
    """For each position, the largest of the other values (`empty` when there is no other)."""
    if len(values) < 2:
        return np.full(len(values), empty)
    best = int(np.argmax(values))
    result = np.full(len(values), values[best], dtype=np.float64)
    result[best] = np.partition(values, -2)[-2]
    return result


class _Calibrator:
    """Logistic regression from a candidate's features to P(it is the right label), fitted on held-out folds."""

    def __init__(self) -> None:
        self.mean, self.scale, self.coef, self.intercept = np.zeros(_N_META), np.ones(_N_META), np.zeros(_N_META), 0.0
        self.fuzzy_only = False

    def fit(self, rows: np.ndarray, right: np.ndarray) -> _Calibrator:
        if len(np.unique(right)) < 2:  # nothing to tell apart (e.g. one label, no out-of-scope): fuzzy score
            self.fuzzy_only = True
            return self
        std = rows.std(axis=0)
        self.mean, self.scale = rows.mean(axis=0), np.where(std > 1e-9, std, 1.0)
        model = LogisticRegression(C=1.0, max_iter=1_000).fit((rows - self.mean) / self.scale, right)
        self.coef, self.intercept = model.coef_[0], float(model.intercept_[0])
        return self

    def probabilities(self, rows: np.ndarray) -> np.ndarray:
        if self.fuzzy_only:
            return np.clip(rows[:, 3], 0.0, 1.0)
        logits = ((rows - self.mean) / self.scale) @ self.coef + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))


class Matcher:
    """Learns labels from example texts; `predict` answers, asks back with candidates, or does not know."""

    def __init__(
        self,
        *,
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
        self._fixed = (answer_threshold, ask_threshold)
        self._thresholds = (
            0.5 if answer_threshold is None else answer_threshold,
            0.2 if ask_threshold is None else ask_threshold,
        )
        self.max_candidates, self.wrong_answer_cost, self.n_folds = max_candidates, wrong_answer_cost, n_folds
        self.top_k, self.c, self.description_weight, self.random_state = top_k, c, description_weight, random_state
        self.labels: tuple[str, ...] = ()
        self.oos_label: str | None = None
        self.heldout: dict[str, float] = {}
        self._base: _Base | None = None
        self._calibrator = _Calibrator()

    def fit(
        self,
        texts: Sequence[str],
        labels: Sequence[str],
        *,
        oos_label: str | None = None,
        descriptions: Mapping[str, Sequence[str]] | None = None,
    ) -> Matcher:
        """Learn from `texts` labelled `labels`; rows labelled `oos_label` teach what not to answer.

        `descriptions` may give, per label, texts about it (tags, an answer) that the classifier
        learns from at `description_weight` but that are never held out nor fuzzy-matched.
        """
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if all(label == oos_label for label in labels):
            raise ValueError("no in-scope example to learn from")
        clean = [normalize_text(t) for t in texts]
        self.labels = tuple(sorted(set(labels)))
        self.oos_label = oos_label if oos_label in self.labels else None
        y = np.array([self.labels.index(label) for label in labels], dtype=np.int64)
        oos = self.labels.index(self.oos_label) if self.oos_label is not None else None
        context = self._context(descriptions or {})
        rows, right, query_ids = self._out_of_fold(clean, y, oos=oos, context=context)
        self._calibrator = _Calibrator().fit(rows, right)
        is_oos = y == oos if oos is not None else np.zeros(len(y), dtype=bool)
        self._choose_thresholds(rows, right, query_ids=query_ids, is_oos=is_oos)
        self._base = self._new_base(oos).fit(clean, y, context=context)
        return self

    def predict(self, text: str) -> Prediction:
        """The verdict on one text of any length or script; never raises once fitted."""
        if self._base is None:
            raise RuntimeError("the matcher is not fitted")
        query = normalize_text(text if isinstance(text, str) else "")
        top, rows = self._base.candidates(query)
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
        """(answer_threshold, ask_threshold): as given to the constructor, else chosen by `fit` on held-out folds."""
        return self._thresholds

    def _new_base(self, oos: int | None) -> _Base:
        return _Base(n_classes=len(self.labels), oos=oos, top_k=self.top_k, c=self.c, random_state=self.random_state)

    def _context(self, descriptions: Mapping[str, Sequence[str]]) -> _Context:
        pairs = [(normalize_text(t, max_chars=20_000), label) for label, ts in descriptions.items() for t in ts]
        pairs = [(t, self.labels.index(label)) for t, label in pairs if t and label in self.labels]
        return _Context([t for t, _ in pairs], np.array([y for _, y in pairs], dtype=np.int64), self.description_weight)

    def _out_of_fold(
        self, texts: list[str], y: np.ndarray, *, oos: int | None, context: _Context
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Calibrator rows for every example's candidates, each from a model that never saw the example."""
        n_folds = self.n_folds or (10 if len(texts) <= 3000 else 5)
        folds = _assign_folds(y, n_folds=n_folds, random_state=self.random_state)
        rows, right, query_ids = [np.zeros((0, _N_META))], [np.zeros(0, dtype=bool)], [np.zeros(0, dtype=np.int64)]
        for fold in range(n_folds):
            held, train = np.flatnonzero(folds == fold), np.flatnonzero(folds != fold)
            if len(held) == 0 or len(train) == 0:
                continue
            base = self._new_base(oos).fit([texts[i] for i in train], y[train], context=context)
            for i in held:
                top, feats = base.candidates(texts[i])
                rows.append(feats)
                right.append(top == y[i])
                query_ids.append(np.full(len(top), i))
        return np.vstack(rows), np.concatenate(right), np.concatenate(query_ids)

    def _choose_thresholds(
        self, rows: np.ndarray, right: np.ndarray, *, query_ids: np.ndarray, is_oos: np.ndarray
    ) -> None:
        """Thresholds maximising in-scope accuracy plus out-of-scope recall on held-out examples.

        Answering a held-out example gains 1 when right, costs `wrong_answer_cost` when wrong and
        1 + that when the example is out of scope (which refusing would have won); asking back gains
        1 when the right label is among the candidates and costs 1 otherwise. In-scope and
        out-of-scope examples weigh half each.
        """
        fixed_answer, fixed_ask = self._fixed
        n = len(is_oos)
        top_conf, top_right, listed = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        probs = self._calibrator.probabilities(rows)
        starts = np.flatnonzero(np.diff(query_ids, prepend=-1))
        for mine in np.split(np.arange(len(query_ids)), starts[1:]) if len(query_ids) else []:
            i, ranked = query_ids[mine[0]], mine[np.argsort(-probs[mine], kind="stable")]
            top_conf[i], top_right[i] = probs[ranked[0]], right[ranked[0]]
            listed[i] = right[ranked[: self.max_candidates]].any()
        weight = np.where(is_oos, 0.5 / max(int(is_oos.sum()), 1), 0.5 / max(int((~is_oos).sum()), 1))
        gain = np.where(top_right, 1.0, -self.wrong_answer_cost) - is_oos.astype(np.float64)
        answer_at = _best_cut(top_conf, weight * gain) if fixed_answer is None else fixed_answer
        below = top_conf < answer_at
        ask_gain = np.where(listed & ~is_oos, 1.0, -0.5)
        ask_at = _best_cut(top_conf[below], weight[below] * ask_gain[below], ceiling=answer_at)
        self._thresholds = (answer_at, min(ask_at if fixed_ask is None else fixed_ask, answer_at))
        self.heldout = _heldout_report(top_conf, top_right, is_oos=is_oos, answer_at=answer_at)


def _assign_folds(y: np.ndarray, *, n_folds: int, random_state: int) -> np.ndarray:
    """Stratified folds: each label's rows shuffled and dealt round the folds from a random start."""
    rng = np.random.default_rng(random_state)
    folds = np.empty(len(y), dtype=np.int64)
    for label in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == label))
        folds[rows] = (np.arange(len(rows)) + rng.integers(n_folds)) % n_folds
    return folds


def _best_cut(conf: np.ndarray, gain: np.ndarray, *, ceiling: float = 1.0) -> float:
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


def _heldout_report(conf: np.ndarray, right: np.ndarray, *, is_oos: np.ndarray, answer_at: float) -> dict[str, float]:
    """What the chosen answer threshold gives on the held-out examples (NaN where undefined)."""
    answered, inscope = conf >= answer_at, ~is_oos

    def share(hits: np.ndarray, among: np.ndarray) -> float:
        return float(hits[among].mean()) if among.any() else float("nan")

    return {
        "top1_accuracy": share(right, inscope),
        "accuracy": share(answered & right, inscope),
        "oos_recall": share(~answered, is_oos),
        "answered_precision": share(right, answered),
    }
