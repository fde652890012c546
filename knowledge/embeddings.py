"""Sentence embeddings for the semantic matcher: a sentence-transformers model and an on-disk vector cache.

The semantic mode needs the `semantic` extra (sentence-transformers, torch); nothing here imports them
until a text is encoded, so the light matcher, which reads static token vectors shipped in the package
(`knowledge.static_vectors`), never pays for them. Models load from a local path or the local
Hugging Face cache only: nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from core.errors import ConfigurationError
from knowledge import tuning
from knowledge.static_vectors import VECTORS_FILE, StaticVectors

log = logging.getLogger("saypro.knowledge")
SETTING = "KNOWLEDGE_EMBEDDINGS"
_CACHE_VERSION = "1"


class Embedder(Protocol):
    """Turns texts into unit-length vectors; `key` names the model for caching.

    How the matcher uses it: only from `min_examples` training examples up (below, too few held-out
    queries to learn what its scores are worth); above `nearest_limit` examples (None: no limit) the
    nearest-example score is read for the candidates alone; with `reads_respelled` it is given the
    query after typo correction (an embedder that reads words one by one), else as typed.
    """

    min_examples: int
    nearest_limit: int | None
    reads_respelled: bool

    @property
    def key(self) -> str: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) float32 rows of length 1, computed or read from the cache."""
        ...

    def encode_one(self, text: str) -> np.ndarray:
        """One query's vector, as fast as the model allows."""
        ...

    def tuned(self, texts: Sequence[str], y: np.ndarray) -> tuple[Embedder, np.ndarray, np.ndarray] | None:
        """A copy trained on the texts labelled `y` >= 0, with every text's vector from it and from this
        embedder; None for an embedder that is not trained (the matcher then uses it as it is)."""
        ...


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/saypro-bot/embeddings`, else `~/.cache/saypro-bot/embeddings`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "saypro-bot" / "embeddings"


class EmbeddingCache:
    """Vectors of a list of texts, one `.npy` file per (model, texts) content hash; writes are atomic."""

    ARRAYS_KEPT = 4  # tuned layers (see put_arrays)

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    @staticmethod
    def content_key(model_key: str, texts: Sequence[str]) -> str:
        digest = hashlib.sha256(f"{_CACHE_VERSION}\0{model_key}\0".encode())
        for text in texts:
            digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
        return digest.hexdigest()

    def get(self, key: str, *, rows: int) -> np.ndarray | None:
        """The cached vectors under `key`, or None when absent or unreadable (then they are recomputed)."""
        path = self.directory / f"{key}.npy"
        try:
            vectors = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        return vectors if vectors.ndim == 2 and len(vectors) == rows else None

    def put(self, key: str, vectors: np.ndarray) -> None:
        """Store `vectors` under `key`; a cache that cannot be written is logged and skipped."""
        self._write(
            self.directory / f"{key}.npy",
            lambda partial: np.save(partial, np.ascontiguousarray(vectors, dtype=np.float32), allow_pickle=False),
        )

    def get_arrays(self, key: str) -> dict[str, np.ndarray] | None:
        """Named arrays stored under `key` (a tuned model's layers), or None when absent or unreadable."""
        try:
            with np.load(self.directory / f"{key}.npz", allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError, KeyError):
            return None

    def put_arrays(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store named arrays under `key`, keeping the `ARRAYS_KEPT` newest such files.

        A tuned model's layers weigh up to some 40 MB and every edit of a knowledge base makes new
        ones, so the oldest are removed. A cache that cannot be written is logged and skipped.
        """
        if self._write(self.directory / f"{key}.npz", lambda partial: np.savez(partial, allow_pickle=False, **arrays)):
            try:
                stored = sorted(self.directory.glob("[!.]*.npz"), key=_modified, reverse=True)
                for old in stored[self.ARRAYS_KEPT :]:
                    old.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("embedding cache %s not pruned: %s", self.directory, exc)

    def _write(self, path: Path, save: Callable[[Path], None]) -> bool:
        """`save` to a partial file beside `path`, then renamed over it (atomic); False, logged, when it failed."""
        partial = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            save(partial)
            os.replace(partial, path)
        except OSError as exc:
            log.warning("embedding cache %s not written: %s", self.directory, exc)
            partial.unlink(missing_ok=True)
            return False
        return True


class SentenceEmbedder:
    """A sentence-transformers model by name or local path, loaded on first use, with a vector cache."""

    min_examples = 0
    nearest_limit: int | None = None
    reads_respelled = False  # a sentence model reads the query as typed

    def __init__(self, model: str, *, cache: EmbeddingCache | None = None, batch_size: int = 64) -> None:
        self.model = model
        self.cache = cache
        self.batch_size = batch_size
        self.encoded = 0  # texts actually run through the model (not read from the cache), for tests and logs
        self._loaded: Any = None
        self._query: tuple[Any, list[Any]] | None = None  # see _forward_path
        self._variant = ""  # a tuned copy's recipe and labels, in its key (see tuned)
        self._lock = threading.Lock()  # queries one at a time: each sets torch to one thread and back

    @property
    def key(self) -> str:
        """The model, and `:bf16` where the examples are encoded in bfloat16 (their vectors differ in rounding)."""
        path = Path(self.model).expanduser()
        name = f"st:{path.resolve()}" if path.exists() else f"st:{self.model}"
        return (f"{name}:bf16" if _native_bfloat16() else name) + self._variant

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        key = EmbeddingCache.content_key(self.key, texts) if self.cache is not None else ""
        if self.cache is not None and (cached := self.cache.get(key, rows=len(texts))) is not None:
            return cached.astype(np.float32, copy=False)
        vectors = self._run(texts)
        if self.cache is not None:
            self.cache.put(key, vectors)
        return vectors

    def encode_one(self, text: str) -> np.ndarray:
        model = self._model()  # first: without the extra it says so, instead of failing on torch
        import torch

        first, rest = self._forward_path()
        with self._lock, torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one short query: threads cost more in hand-offs than they save
            try:
                vectors = _forward(model, first, rest, [text])
            finally:
                torch.set_num_threads(threads)
        return vectors[0]

    def _forward_path(self) -> tuple[Any, list[Any]]:
        """The model's first module (the transformer), and the modules after it (pooling...).

        Where torch's oneDNN computes bfloat16 on this CPU (AVX-512 and later), the transformer runs
        in a bfloat16 copy of itself, for the examples' batches as for each query: a third less time
        per query and under half the time per batch on this repository's machine, and vectors
        within 0.9999 cosine of the float32 ones, since pooling and normalising stay in float32.
        Elsewhere, float32. A model of another shape (a Router) is run whole.
        """
        if self._query is None:
            import torch

            model = self._model()
            modules = list(model.children())
            first = modules[0]
            plain = not any(type(m).__name__ == "Router" for m in modules)
            if plain and _native_bfloat16():
                first = copy.deepcopy(first).to(torch.bfloat16).eval()
            self._query = (first, modules[1:]) if plain else (model, [])
        return self._query

    def _run(self, texts: list[str]) -> np.ndarray:
        """The texts' vectors, in batches of similar lengths (little padding) on every core the process may use."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        model = self._model()
        import torch

        first, rest = self._forward_path()
        batches = tuning.length_batches([len(t) for t in texts], self.batch_size)
        with self._all_cores(), torch.inference_mode():
            parts = [_forward(model, first, rest, [texts[i] for i in b]) for b in batches]
        self.encoded += len(texts)
        return _in_order(batches, parts)

    @contextlib.contextmanager
    def _all_cores(self) -> Iterator[None]:
        """Torch on every core the process may use, for a batch job (encoding or training), then as it was.

        The lock only around setting torch's threads: a re-fit's batches must not hold up the queries
        answered meanwhile (each of which sets one thread and puts back what it found).
        """
        import torch

        with self._lock:
            threads = torch.get_num_threads()
            torch.set_num_threads(_cores())
        try:
            yield
        finally:
            with self._lock:
                torch.set_num_threads(threads)

    def tuned(self, texts: Sequence[str], y: np.ndarray) -> tuple[SentenceEmbedder, np.ndarray, np.ndarray] | None:
        """A copy of this embedder with its top layers trained on the texts labelled `y` >= 0, with every text's
        vector from the copy and from this embedder.

        Rows labelled -1 are encoded but not trained on (a label's description). The
        trained layers and both sets of vectors are cached on disk by content (model, recipe, texts
        and labels), so a restart neither trains nor encodes again. None when the model is not
        BERT-shaped: then the matcher uses it as it is. See knowledge.tuning.
        """
        model = self._model()
        inner = tuning.tunable(model)
        first, rest = self._forward_path()
        if inner is None or first is model or len(texts) == 0:
            return None
        import torch

        texts = list(texts)
        recipe = tuning.recipe_for(y, len(inner.encoder.layer))
        labels = hashlib.sha256(np.ascontiguousarray(y, dtype=np.int64).tobytes()).hexdigest()
        variant = f":tuned:{recipe.key}:{labels}"
        key, plain_key = (
            EmbeddingCache.content_key(self.key + variant, texts),
            EmbeddingCache.content_key(self.key, texts),
        )
        answering = first.auto_model  # the bfloat16 copy where native, else the model's own transformer
        below, above = answering.encoder.layer[: recipe.first_layer], answering.encoder.layer[recipe.first_layer :]
        top = tuning.copy_layers(inner.encoder.layer[recipe.first_layer :], torch.float32)
        stored = self.cache.get_arrays(key) if self.cache is not None else None
        vectors = self.cache.get(key, rows=len(texts)) if self.cache is not None else None
        plain = self.cache.get(plain_key, rows=len(texts)) if self.cache is not None else None
        if stored is not None and vectors is not None and plain is not None:
            top.load_state_dict({name: torch.from_numpy(array) for name, array in stored.items()})
            trained = tuning.copy_layers(top, answering.dtype).eval()
        else:
            with self._all_cores():
                bottom = tuning.TunedTransformer(answering.embeddings, below)
                states = tuning.lower_states(bottom, model.preprocess, texts, batch=self.batch_size)
                plain = self._through(above, states, rest)
                tuning.train_top(top, _pooling(rest), states, y, recipe, start=plain, bfloat16=_native_bfloat16())
                trained = tuning.copy_layers(top, answering.dtype).eval()
                vectors = self._through(trained, states, rest)
            self.encoded += len(texts)
            if self.cache is not None:
                self.cache.put_arrays(key, {name: t.float().numpy() for name, t in top.state_dict().items()})
                self.cache.put(key, vectors)
                self.cache.put(plain_key, plain)
        copy_ = SentenceEmbedder(self.model, cache=self.cache, batch_size=self.batch_size)
        copy_._loaded, copy_._lock, copy_._variant = self._loaded, self._lock, self._variant + variant
        copy_._query = (tuning.TunedTransformer(answering.embeddings, [*below, *trained]), rest)
        return copy_, vectors, plain

    def _through(self, layers: Any, states: list[Any], rest: list[Any]) -> np.ndarray:
        """Unit vectors of texts from their token states run through `layers` and the model's pooling."""
        import torch

        pool = _pooling(rest)
        batches = tuning.length_batches([s.shape[0] for s in states], self.batch_size)
        with torch.inference_mode():
            parts = [pool(*tuning.through(layers, [states[i] for i in b], states[0].dtype)).numpy() for b in batches]
        return _in_order(batches, parts)

    def _model(self) -> Any:
        if self._loaded is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a name not in the local cache fails, never downloads
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise ConfigurationError(
                    f'{SETTING} is set but sentence-transformers is not installed: pip install -e ".[semantic]"'
                ) from exc
            _quiet_transformers()
            try:
                self._loaded = SentenceTransformer(self.model, device="cpu")
            except (OSError, ValueError, RuntimeError) as exc:
                raise ConfigurationError(f"{SETTING}: cannot load the model {self.model!r}: {exc}") from exc
        return self._loaded


def _forward(model: Any, first: Any, rest: list[Any], texts: list[str]) -> np.ndarray:
    """(len(texts), dimension) float32 rows of length 1: `first` (the transformer) then `rest` in float32."""
    import torch

    features = first(model.preprocess(texts))
    features = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in features.items()}
    for module in rest:
        features = module(features)
    vectors = features["sentence_embedding"].float().numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def _in_order(batches: list[list[int]], parts: list[np.ndarray]) -> np.ndarray:
    """The rows of `parts` (one array per batch of indices) put back in the order of the indices."""
    vectors = np.empty((sum(len(b) for b in batches), parts[0].shape[1]), dtype=np.float32)
    vectors[np.concatenate(batches)] = np.concatenate(parts)
    return vectors


def _modified(path: Path) -> float:
    """A file's modification time; one removed meanwhile counts as the oldest."""
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _pooling(rest: list[Any]) -> Any:
    """(token states, mask) to unit sentence vectors through the model's own modules after its transformer."""

    def pool(states: Any, mask: Any) -> Any:
        import torch

        features = {"token_embeddings": states.float(), "attention_mask": mask}
        for module in rest:
            features = module(features)
        return torch.nn.functional.normalize(features["sentence_embedding"].float(), dim=1)

    return pool


@functools.cache
def _native_bfloat16() -> bool:
    """Whether oneDNN computes bfloat16 matrix products on this CPU (elsewhere they are slower than float32)."""
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        return False


def _cores() -> int:
    """The cores this process may run on (a batch of examples uses them all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _quiet_transformers() -> None:
    """No progress bars from transformers while loading: --json output and logs stay clean."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:
        return
    transformers_logging.disable_progress_bar()
    transformers_logging.set_verbosity_error()


def embedder_for(setting: str | None, *, cache_dir: str | Path | None = None) -> Embedder | None:
    """The embedder KNOWLEDGE_EMBEDDINGS names (a model name or local path), else the light matcher's.

    Unset, the light matcher scores with the static token vectors shipped in the package (no torch,
    nothing to download); a checkout without that file falls back to the lexical scorers alone.
    """
    if setting is None or not setting.strip():
        if not VECTORS_FILE.is_file():
            log.warning("%s is missing: the light matcher runs without static vectors", VECTORS_FILE)
            return None
        return StaticVectors()
    directory = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return SentenceEmbedder(setting.strip(), cache=EmbeddingCache(directory))
