"""Static token vectors shipped with the package: meaning for the light matcher without torch or a download.

`knowledge/data/minilm-static.npz` holds one vector per WordPiece token of all-MiniLM-L6-v2's
vocabulary, distilled from that sentence-transformer with model2vec (each token run through the
model alone, then PCA and frequency weighting) and stored as int8 rows with one scale each. A
text's vector is the normalised mean of its tokens' vectors: numpy and a dictionary look-up per
word, a few microseconds a query. `python -m knowledge.static_build` rebuilds the file.
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

VECTORS_FILE = Path(__file__).parent / "data" / "minilm-static.npz"
_MAX_WORD_CHARS = 100  # longer words are one unknown token, as in BERT's WordPiece
_PREFIX = "##"
_MAX_TOKENS = 512
MIN_EXAMPLES = 200  # fewer examples than this: the matcher leaves the static vectors out
NEAREST_LIMIT = 4096


def _is_punctuation(ch: str) -> bool:
    """BERT's punctuation: every ASCII symbol and every Unicode P* character, each a word of its own."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


def basic_words(text: str) -> list[str]:
    """BERT's uncased normaliser and pre-tokeniser: lower case, no accents, split on spaces and punctuation."""
    words: list[str] = []
    current: list[str] = []
    for ch in unicodedata.normalize("NFD", text.lower()):
        cp = ord(ch)
        category = unicodedata.category(ch)
        if category == "Mn" or cp == 0 or cp == 0xFFFD or (category in ("Cc", "Cf") and ch not in "\t\n\r"):
            continue
        if ch.isspace() or category == "Zs":
            if current:
                words.append("".join(current))
                current = []
        elif _is_punctuation(ch) or _is_cjk(cp):
            if current:
                words.append("".join(current))
                current = []
            words.append(ch)
        else:
            current.append(ch)
    if current:
        words.append("".join(current))
    return words


class WordPiece:
    """Greedy longest-match-first WordPiece over a fixed vocabulary; unknown words give no token."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.vocabulary = {token: i for i, token in enumerate(tokens)}
        self.pieces = lru_cache(maxsize=65_536)(self._pieces)

    def ids(self, text: str) -> list[int]:
        """Token ids of `text` without special tokens, at most 512; words the vocabulary cannot spell are left out."""
        ids: list[int] = []
        for word in basic_words(text):
            ids += self.pieces(word)
            if len(ids) >= _MAX_TOKENS:
                return ids[:_MAX_TOKENS]
        return ids

    def _pieces(self, word: str) -> tuple[int, ...]:
        if len(word) > _MAX_WORD_CHARS:
            return ()
        found: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            piece = None
            while start < end:
                candidate = word[start:end] if start == 0 else _PREFIX + word[start:end]
                piece = self.vocabulary.get(candidate)
                if piece is not None:
                    break
                end -= 1
            if piece is None:
                return ()  # BERT gives the whole word one [UNK], which the mean leaves out
            found.append(piece)
            start = end
        return tuple(found)


class StaticVectors:
    """An `Embedder` over the shipped token vectors: a text is the normalised mean of its tokens' vectors.

    `min_examples`: the matcher uses these vectors only when it learns from at least that many
    examples. Their scores' worth is learnt by the calibrator from held-out queries; a knowledge base
    of a few dozen examples gives too few of those, and the lexical scorers alone do better there.
    """

    def __init__(self, path: str | Path = VECTORS_FILE, *, min_examples: int = MIN_EXAMPLES) -> None:
        self.path = Path(path)
        self.min_examples = min_examples
        # above this many examples the matcher reads the nearest example for its candidates alone:
        # a pass over every example's vector per query costs about a millisecond, memory-bound
        self.nearest_limit = NEAREST_LIMIT
        # a misspelt word falls into meaningless word pieces: the matcher passes queries respelled
        self.reads_respelled = True
        self._loaded: tuple[WordPiece, np.ndarray] | None = None
        self.meta: dict[str, object] = {}

    @property
    def key(self) -> str:
        return f"static:{self.path.name}"

    @property
    def dimension(self) -> int:
        return int(self._load()[1].shape[1])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        tokenizer, vectors = self._load()
        result = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        for row, text in enumerate(texts):
            result[row] = self._mean(tokenizer.ids(text), vectors)
        return result

    def encode_one(self, text: str) -> np.ndarray:
        tokenizer, vectors = self._load()
        return self._mean(tokenizer.ids(text), vectors)

    def tuned(self, texts: Sequence[str], y: np.ndarray) -> None:
        """None: the shipped vectors are used as they are (there is no model to train)."""

    @staticmethod
    def _mean(ids: list[int], vectors: np.ndarray) -> np.ndarray:
        if not ids:
            return np.zeros(vectors.shape[1], dtype=np.float32)
        mean = vectors[ids].mean(axis=0)
        norm = float(np.sqrt(mean @ mean))
        return mean / norm if norm > 1e-12 else mean

    def _load(self) -> tuple[WordPiece, np.ndarray]:
        if self._loaded is None:
            self._loaded, self.meta = _read(self.path.resolve())
        return self._loaded


_READ_LOCK = threading.Lock()


@lru_cache(maxsize=4)
def _cached_read(path: Path) -> tuple[tuple[WordPiece, np.ndarray], dict[str, object]]:
    with np.load(path, allow_pickle=False) as data:
        tokens = [str(t) for t in data["tokens"]]
        scales = data["scales"].astype(np.float32)
        vectors = data["vectors"].astype(np.float32) * scales[:, None]
        meta = json.loads(str(data["meta"]))
    if len(tokens) != len(vectors):
        raise ValueError(f"{path}: {len(tokens)} tokens but {len(vectors)} vectors")
    vectors.setflags(write=False)
    return (WordPiece(tokens), np.ascontiguousarray(vectors)), meta


def _read(path: Path) -> tuple[tuple[WordPiece, np.ndarray], dict[str, object]]:
    """The tokenizer and vectors of `path`, read once per process (every matcher and reload shares them)."""
    with _READ_LOCK:
        return _cached_read(path)


def quantise(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows as int8 with one float16 scale each: `q * scale[:, None]` gives the rows back within 1/254 of their peak."""
    peak = np.abs(vectors).max(axis=1)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float16)
    quantised = np.clip(np.rint(vectors / scales.astype(np.float32)[:, None]), -127, 127).astype(np.int8)
    return quantised, scales


def save(path: str | Path, tokens: Sequence[str], vectors: np.ndarray, meta: dict[str, object]) -> None:
    """Write the token vectors `StaticVectors` reads: int8 rows, their scales, the tokens in id order, `meta`."""
    quantised, scales = quantise(np.asarray(vectors, dtype=np.float32))
    np.savez_compressed(
        path,
        vectors=quantised,
        scales=scales,
        tokens=np.array(list(tokens)),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
