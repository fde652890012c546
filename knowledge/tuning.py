"""Fitting the sentence model's top layers to the examples' labels, for the semantic matcher.

all-MiniLM-L6-v2 was trained to place paraphrases together, not a bank's or a knowledge base's
intents apart. A short training of its top on the examples, held to a fit-time budget, moves the
examples of one label closer together. Two recipes, by how many examples a label has:

- many (a median of 30 or more): the last layer, one pass over the examples, cross-entropy over the
  labels through a cosine head that starts at each label's mean vector;
- few: every layer (the word embeddings stay frozen), 48 steps of 16 labels with two examples each,
  each pair's other examples in the batch as its negatives (SetFit-style contrastive training).

The layers below the trained ones run once per text, in bfloat16 where the CPU computes it (see
knowledge.embeddings), and their output is kept, so the trained top is all that a step runs.
Nothing here imports torch until it is called.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

_MANY_PER_LABEL = 30
_SCALE = 20.0  # cosine logits times this, in both objectives


@dataclass(frozen=True)
class Recipe:
    """Which layers train (from `first_layer` on), on what, for how long."""

    first_layer: int
    objective: str  # "labels": cross-entropy over the labels; "pairs": two examples of a label, the batch as negatives
    steps: int | None  # None: one pass over the examples
    learning_rate: float
    batch: int = 32
    epochs: float = 1.0  # passes over the examples, when `steps` is None

    @property
    def key(self) -> str:
        return f"{self.first_layer}:{self.objective}:{self.steps}:{self.learning_rate}:{self.batch}:{self.epochs}"


MANY = Recipe(first_layer=5, objective="labels", steps=None, learning_rate=1e-4)
FEW = Recipe(first_layer=0, objective="pairs", steps=48, learning_rate=2e-5)


def recipe_for(y: np.ndarray, n_layers: int) -> Recipe:
    """MANY when labels have a median of 30 examples or more, else FEW; within the model's depth."""
    counts = np.bincount(y[y >= 0])
    recipe = MANY if float(np.median(counts[counts > 0])) >= _MANY_PER_LABEL else FEW
    return dataclasses.replace(recipe, first_layer=min(recipe.first_layer, n_layers - 1))


def tunable(model: Any) -> Any | None:
    """The BERT-shaped transformer (embeddings, then encoder.layer) inside a sentence-transformers model, else None."""
    modules = list(model.children())
    inner = getattr(modules[0], "auto_model", None) if modules else None
    layers = getattr(getattr(inner, "encoder", None), "layer", None)
    if inner is None or layers is None or getattr(inner, "embeddings", None) is None or len(layers) == 0:
        return None
    return inner


class TunedTransformer:
    """The transformer with a trained top: token states for the model's pooling, as its first module gives them."""

    def __init__(self, embeddings: Any, layers: Sequence[Any]) -> None:
        self.embeddings, self.layers = embeddings, list(layers)

    def __call__(self, features: dict[str, Any]) -> dict[str, Any]:
        states = self.embeddings(input_ids=features["input_ids"], token_type_ids=features.get("token_type_ids"))
        states = run_layers(self.layers, states, features["attention_mask"])
        return {**features, "token_embeddings": states}


def run_layers(layers: Sequence[Any], states: Any, mask: Any) -> Any:
    """`states` through `layers`, padding masked out (an additive mask in the states' own type)."""
    import torch

    additive = (1.0 - mask[:, None, None, :].to(states.dtype)) * torch.finfo(states.dtype).min
    for layer in layers:
        out = layer(states, attention_mask=additive)
        states = out[0] if isinstance(out, tuple) else out
    return states


def length_batches(lengths: Sequence[int], size: int) -> list[list[int]]:
    """Indices sorted by length (ties in order), cut into batches of `size`: a batch of similar lengths pads little."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start : start + size] for start in range(0, len(order), size)]


def lower_states(bottom: TunedTransformer, preprocess: Any, texts: list[str], *, batch: int) -> list[Any]:
    """Per text, its unpadded token states after the frozen layers (in their own type), in sorted batches."""
    import torch

    states: list[Any] = [None] * len(texts)
    with torch.inference_mode():
        for rows in length_batches([len(t) for t in texts], batch):
            features = bottom(preprocess([texts[i] for i in rows]))
            lengths = features["attention_mask"].sum(dim=1).tolist()
            for row, i, n in zip(features["token_embeddings"], rows, lengths, strict=True):
                states[i] = row[: int(n)].clone()
    return states


def train_top(
    top: Any,
    pool: Any,
    states: list[Any],
    y: np.ndarray,
    recipe: Recipe,
    *,
    start: np.ndarray,
    bfloat16: bool,
    seed: int = 0,
) -> None:
    """Train `top` (a ModuleList, float32) in place on `states` labelled `y` (rows labelled -1 are not trained on).

    `pool(token_states, mask)` turns the top's output into unit sentence vectors, as the model's own
    pooling does; `start` holds every text's vector before training (the "labels" head starts at
    each label's mean). With `bfloat16`, the steps run under CPU autocast (half the time where native).
    """
    import torch

    rows = np.flatnonzero(y >= 0)
    labels = y[rows]
    if len(np.unique(labels)) < 2 or (recipe.objective == "pairs" and np.sort(np.bincount(labels))[-2] < 2):
        return  # nothing to tell apart: the model stays as it is
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    n_labels = int(labels.max()) + 1

    def vectors(picked: Sequence[int]) -> Any:
        return pool(*through(top, [states[i] for i in picked], torch.float32))

    head = None
    params: list[dict[str, Any]] = [{"params": top.parameters(), "lr": recipe.learning_rate}]
    if recipe.objective == "labels":
        means = np.zeros((n_labels, start.shape[1]), dtype=np.float32)
        np.add.at(means, labels, start[rows])
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
        head = torch.nn.Parameter(torch.from_numpy(means))
        params.append({"params": [head], "lr": recipe.learning_rate * 20})
        batches = [rows[b] for b in length_batches([states[i].shape[0] for i in rows], recipe.batch)]
        passes = max(1, int(np.ceil(recipe.epochs)))
        plan = [batches[i] for _ in range(passes) for i in rng.permutation(len(batches))]
        plan = plan[: recipe.steps or round(recipe.epochs * len(batches))]
    else:
        groups = [rows[labels == c] for c in range(n_labels)]
        pairable = [g for g in groups if len(g) >= 2]
        per_step = min(recipe.batch // 2, len(pairable))
        plan = []
        for _ in range(recipe.steps or 0):
            chosen = rng.choice(len(pairable), per_step, replace=False)
            pairs = [rng.choice(pairable[c], 2, replace=False) for c in chosen]
            plan.append(np.array([a for a, _ in pairs] + [b for _, b in pairs]))
    optimizer = torch.optim.AdamW(params, weight_decay=0.01)
    top.train()
    for picked in plan:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
            out = vectors(picked.tolist()).float()
            if head is not None:
                weight = torch.nn.functional.normalize(head, dim=1)
                loss = torch.nn.functional.cross_entropy(_SCALE * out @ weight.T, torch.from_numpy(y[picked]))
            else:
                half = len(picked) // 2
                logits = _SCALE * out[:half] @ out[half:].T
                target = torch.arange(half)
                loss = (
                    torch.nn.functional.cross_entropy(logits, target)
                    + torch.nn.functional.cross_entropy(logits.T, target)
                ) / 2
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    top.eval()


def through(layers: Sequence[Any], states: Sequence[Any], dtype: Any) -> tuple[Any, Any]:
    """Texts' token states padded into one batch in `dtype` and run through `layers`: (token states, mask)."""
    import torch

    width = max(int(s.shape[0]) for s in states)
    batch = torch.zeros(len(states), width, states[0].shape[1], dtype=dtype)
    mask = torch.zeros(len(states), width)
    for n, s in enumerate(states):
        batch[n, : s.shape[0]] = s
        mask[n, : s.shape[0]] = 1.0
    return run_layers(layers, batch, mask), mask


def copy_layers(layers: Sequence[Any], dtype: Any) -> Any:
    """A ModuleList of copies of `layers` in `dtype`, for inference or training."""
    import torch

    return torch.nn.ModuleList([copy.deepcopy(layer).to(dtype) for layer in layers])
