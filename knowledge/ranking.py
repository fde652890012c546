"""Arithmetic on a query's score arrays (one value per label): the best few, one scorer's scores
made comparable with another's, and each label's margin over the best other one."""

from __future__ import annotations

import numpy as np


def top_k(values: np.ndarray, k: int, *, block: int = 64) -> np.ndarray:
    """The indices of the `k` largest values, largest first (ties by index).

    Through block maxima: the k largest values lie in the k blocks with the largest maxima, so
    only those blocks are partitioned (numpy's own argpartition is slow on long arrays).
    """
    if len(values) > 4 * block * k:
        n_blocks = -(-len(values) // block)
        padded = np.full(n_blocks * block, -np.inf)
        padded[: len(values)] = values
        blocks = padded.reshape(n_blocks, block)
        best_blocks = np.sort(np.argpartition(-blocks.max(axis=1), k - 1)[:k])
        pool = (best_blocks[:, None] * block + np.arange(block)).ravel()
        pool = pool[pool < len(values)]
    else:
        pool = np.arange(len(values))
    order = np.argsort(-values[pool], kind="stable")[:k]
    return pool[order]


def standardised(score: np.ndarray, among: np.ndarray) -> np.ndarray:
    """`score` centred and scaled by its spread over the `among` classes, so that scorers add up fairly."""
    part = score[among]
    std = float(part.std()) if len(part) > 1 else 0.0
    return (score - float(part.mean())) / (std if std > 1e-9 else 1.0)


def best_other(values: np.ndarray, *, empty: float) -> np.ndarray:
    """For each position, the largest of the other values (`empty` when there is no other)."""
    if len(values) < 2:
        return np.full(len(values), empty)
    best = int(np.argmax(values))
    result = np.full(len(values), values[best], dtype=np.float64)
    result[best] = np.partition(values, -2)[-2]
    return result
