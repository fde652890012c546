"""One fitted set of the matcher's scorers: a query's top candidates and, for each, its calibrator features.

`knowledge.matcher` fits one `Scorers` per held-out fold and one on every example; the calibrator
turns the rows `Scorers.candidates` gives into a confidence.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from rapidfuzz import fuzz, process

from knowledge import ranking
from knowledge.scorers import ABSENT, LexicalScorer, SemanticScorer

WORD = re.compile(r"\w+")
_MIN_FIXED, _SPELLING_CUTOFF = (
    4,
    85.0,
)  # typo correction: words this long, this similar (rapidfuzz ratio)
_SEMANTIC_WEIGHT = 1.0  # in the ranking, each embedding score beside the lexical ones


@dataclass(frozen=True)
class Examples:
    """Example texts with their labels and, in the semantic mode, their embeddings."""

    texts: list[str]
    y: np.ndarray
    vectors: np.ndarray | None

    def subset(self, rows: np.ndarray) -> Examples:
        vectors = self.vectors[rows] if self.vectors is not None else None
        return Examples([self.texts[i] for i in rows], self.y[rows], vectors)


class Scorers:
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

    def fit(self, data: Examples, *, context: Examples, context_weight: float) -> Scorers:
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
        self.known_words = frozenset(w for t in inscope for w in WORD.findall(t))
        self.spellings = sorted({w for t in texts for w in WORD.findall(t) if len(w) >= _MIN_FIXED})
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

        return WORD.sub(closest, query)

    def candidates(self, query: str, vector: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The top-k in-scope classes by combined score and, for each, its row of calibrator features."""
        words = WORD.findall(query)
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
