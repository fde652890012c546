"""Lexical text features: TF-IDF word and character n-grams, with a fast one-text transform for queries."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

_LABEL_SPLIT = re.compile(r"[_\-./:]+|(?<=[a-z0-9])(?=[A-Z])")
_WORD = re.compile(r"\w+")
# Endings stripped from a word of at least 3 letters more, longest first: "payouts" and "payout",
# "verified" and "verify", "uploading" and "upload" become one word feature (a light Porter).
_SUFFIXES = ("ations", "ation", "ings", "ing", "ies", "ied", "ed", "es", "s", "ly")


def stem(word: str) -> str:
    """`word` without its first matching ending from `_SUFFIXES`, if at least three letters remain."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) >= len(suffix) + 3:
            return word[: -len(suffix)]
    return word


def stemmed(text: str) -> str:
    """Every word of `text` stemmed, joined by spaces."""
    return " ".join(stem(word) for word in _WORD.findall(text))


class TextFeatures:
    """Stemmed word 1-2-grams and char_wb 2-5-grams, each TF-IDF weighted (sublinear tf) and L2-normalised."""

    def __init__(self) -> None:
        self._word = TfidfVectorizer(
            ngram_range=(1, 2),
            sublinear_tf=True,
            lowercase=False,
            token_pattern=r"(?u)\b\w+\b",
            dtype=np.float32,
            preprocessor=stemmed,
        )
        self._char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            sublinear_tf=True,
            lowercase=False,
            dtype=np.float32,
        )
        self._parts: list[tuple[Callable[[str], list[str]], dict[str, int], np.ndarray, int]] = []
        self.n_features = 0

    def fit_transform(self, texts: list[str]) -> sparse.csr_matrix:
        """Learn the vocabularies and weights from `texts`; raise ValueError if they hold nothing to read."""
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
        self.n_features = offset
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


def label_words(label: str) -> str:
    """A label's name as words (`card_arrival` -> `card arrival`, `topUp` -> `top Up`), for learning from it."""
    return " ".join(part for part in _LABEL_SPLIT.split(label) if part)
