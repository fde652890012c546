"""What the matcher scores a query with: a linear SVM over TF-IDF, and sentence-embedding models."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from knowledge.features import TextFeatures

ABSENT = -10.0  # the score of a label that a training subset never saw
PROTOTYPE_FEATURES = 64  # n-grams each prototype keeps when there are many labels
MANY_LABELS = 300  # above this many labels the SVM gives way to the prototypes alone
FEW_SHOTS = 12.0  # examples per label at which the prototype score weighs as much as the SVM's


class LexicalScorer:
    """Word and character TF-IDF features; per label, a one-vs-rest linear SVM's score.

    With more than `MANY_LABELS` labels the SVM would cost minutes to fit and gigabytes to keep
    (labels x features), so each label's prototype (the normalised mean of its examples, pruned
    to its heaviest n-grams) scores it instead: a sparse product whose cost is what the query's
    n-grams touch, however many labels there are. Beside the SVM the prototypes are a second score
    that counts when labels have few examples (they add 1.2 points on BANKING77 at 10 examples per
    label, and cost one at 130): its weight is `FEW_SHOTS` over the median examples per label, at most 1.
    """

    def __init__(self, *, n_classes: int, c: float, random_state: int) -> None:
        self.n_classes, self.c, self.random_state = n_classes, c, random_state
        self.features = TextFeatures()
        self.weights: np.ndarray | None = None  # features x classes, the SVM's
        self.bias = np.full(n_classes, ABSENT, dtype=np.float32)
        self.prototypes: sparse.csr_matrix | None = None  # features x classes
        self.absent = np.zeros(n_classes)
        self.blend = [1.0]  # per score that `scores` returns, its weight in the ranking

    def fit(self, texts: list[str], y: np.ndarray, *, weights: np.ndarray) -> LexicalScorer:
        x = self.features.fit_transform(texts)
        present = np.unique(y)
        self.absent = np.full(self.n_classes, ABSENT)
        self.absent[present] = 0.0
        many = self.n_classes > MANY_LABELS
        self.prototypes = _prototypes(
            x,
            y,
            weights=weights,
            n_classes=self.n_classes,
            keep=PROTOTYPE_FEATURES if many else None,
        )
        if many:
            return self
        per_label = float(np.median(np.bincount(y)[present]))
        self.blend = [1.0, min(1.0, FEW_SHOTS / max(per_label, 1.0))]
        coef = np.zeros((self.n_classes, x.shape[1]), dtype=np.float32)
        if len(present) >= 2:
            svm = LinearSVC(C=self.c, max_iter=10_000, random_state=self.random_state).fit(x, y, sample_weight=weights)
            rows, icpt = svm.coef_, svm.intercept_
            if len(present) == 2:  # sklearn keeps one row for two classes: the second one's score
                rows, icpt = np.vstack([-rows, rows]), np.concatenate([-icpt, icpt])
            coef[present], self.bias[present] = rows, icpt
        else:
            self.bias[present] = 0.0
        self.weights = np.ascontiguousarray(coef.T)
        return self

    def scores(self, query: str) -> list[np.ndarray]:
        """Per label: the SVM's score and the prototype's cosine, or with many labels the cosine alone."""
        idx, val = self.features.transform_one(query)
        result = []
        if self.weights is not None:
            result.append((val @ self.weights[idx] + self.bias).astype(np.float64))
        if self.prototypes is not None:
            picked = self.prototypes[idx]
            result.append(np.asarray(picked.T @ val, dtype=np.float64).ravel() + self.absent)
        return result


def _prototypes(
    x: sparse.csr_matrix,
    y: np.ndarray,
    *,
    weights: np.ndarray,
    n_classes: int,
    keep: int | None = None,
) -> sparse.csr_matrix:
    """features x labels: each label's weighted mean example, L2-normalised, as a sparse matrix.

    With `keep`, each prototype keeps only its `keep` heaviest features: the n-grams common to
    every label weigh little and are dropped, so a query touches a few labels per n-gram, not all.
    """
    onehot = sparse.csr_matrix((weights, (y, np.arange(len(y)))), shape=(n_classes, len(y)))
    sums = (onehot @ x).tocsr()
    if keep is not None:
        sums = _heaviest(sums, keep)
    norms = np.sqrt(np.asarray(sums.multiply(sums).sum(axis=1)).ravel())
    scaled = sparse.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ sums
    return sparse.csr_matrix(scaled.T, dtype=np.float32)


def _heaviest(matrix: sparse.csr_matrix, keep: int) -> sparse.csr_matrix:
    """Each row's `keep` largest entries."""
    matrix.sort_indices()
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    kept_data, kept_indices, kept_ptr = [], [], [0]
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        values = data[start:end]
        chosen = np.sort(np.argpartition(-values, keep - 1)[:keep]) if end - start > keep else np.arange(end - start)
        kept_data.append(values[chosen])
        kept_indices.append(indices[start:end][chosen])
        kept_ptr.append(kept_ptr[-1] + len(chosen))
    return sparse.csr_matrix(
        (np.concatenate(kept_data), np.concatenate(kept_indices), np.array(kept_ptr)),
        shape=matrix.shape,
    )


class SemanticScorer:
    """Over sentence embeddings: a multinomial logistic regression, and the cosine of the nearest example."""

    def __init__(self, *, n_classes: int, c: float = 10.0) -> None:
        self.n_classes, self.c = n_classes, c
        self.weights = np.zeros((0, n_classes), dtype=np.float32)
        self.bias = np.full(n_classes, ABSENT, dtype=np.float32)
        self.examples = np.zeros((0, 0), dtype=np.float32)  # example vectors sorted by class
        self.bounds = np.zeros(n_classes + 1, dtype=np.int64)

    def fit(
        self,
        vectors: np.ndarray,
        y: np.ndarray,
        *,
        n_examples: int,
        weights: np.ndarray,
    ) -> SemanticScorer:
        """Learn from `vectors` labelled `y`; the first `n_examples` rows are examples, the rest descriptions."""
        present = np.unique(y)
        self.weights = np.zeros((vectors.shape[1], self.n_classes), dtype=np.float32)
        if self.n_classes > MANY_LABELS:  # as for the lexical scorer: prototypes instead of a classifier
            self.weights = np.asarray(
                _prototypes(
                    sparse.csr_matrix(vectors),
                    y,
                    weights=weights,
                    n_classes=self.n_classes,
                ).todense(),
                dtype=np.float32,
            )
            self.bias[present] = 0.0
        elif len(present) >= 2:
            # one BLAS thread: on small dense problems more threads cost more in hand-offs than they save
            # (on two busy cores, ten times the fit time)
            with threadpool_limits(limits=1):
                model = LogisticRegression(C=self.c, max_iter=300, tol=1e-3).fit(vectors, y, sample_weight=weights)
            rows, icpt = model.coef_, model.intercept_
            if len(present) == 2:
                rows, icpt = (
                    np.vstack([-rows, rows]) / 2.0,
                    np.concatenate([-icpt, icpt]) / 2.0,
                )
            self.weights[:, present], self.bias[present] = rows.T, icpt
        else:
            self.bias[present] = 0.0
        order = np.argsort(y[:n_examples], kind="stable")
        self.examples = np.ascontiguousarray(vectors[:n_examples][order], dtype=np.float32)
        self.bounds = np.searchsorted(y[:n_examples][order], np.arange(self.n_classes + 1))
        return self

    def scores(self, vector: np.ndarray, *, nearest: bool = True) -> list[np.ndarray]:
        """Per label: the logistic regression's logit and, with `nearest`, the nearest example's cosine (-1: none)."""
        logits = (vector @ self.weights + self.bias).astype(np.float64)
        if not nearest:
            return [logits]
        result = np.full(self.n_classes, -1.0)
        if len(self.examples):
            sims = self.examples @ vector
            has = self.bounds[1:] > self.bounds[:-1]
            result[has] = np.maximum.reduceat(sims, self.bounds[:-1][has])
        return [logits, result]

    def nearest(self, vector: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """The nearest example's cosine for each of `classes` only (-1: none): a pass over their examples alone."""
        result = np.full(len(classes), -1.0)
        for i, c in enumerate(classes):
            start, end = self.bounds[c], self.bounds[c + 1]
            if end > start:
                result[i] = float((self.examples[start:end] @ vector).max())
        return result
