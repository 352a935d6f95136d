"""A ridge regression solved in closed form, its penalty chosen by leave-one-out error.

The linear map after thousands of frozen features (MiniRocket's) is what a few hundred
examples train worst by gradient steps and what a ridge solves best: MiniRocket's own
classifier is scikit-learn's ``RidgeClassifierCV`` over :data:`ALPHAS` (Dempster et al. 2021).
One eigendecomposition of the smaller Gram matrix (the examples' with fewer examples than
features, else the features') gives every penalty's solution and its exact leave-one-out
predictions (Allen's PRESS, as scikit-learn's efficient cross-validation computes them), so
choosing the penalty costs no refit. Where both sides exceed :data:`LIMIT`, or the rows would
not fit in :data:`MAX_ENTRIES`, the solve grows too slow or too large for a model's build and
the map is trained with the rest of the network instead, as MiniRocket's authors train a
logistic regression by gradient steps on large sets.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

ALPHAS = np.logspace(-3, 3, 10)  # RidgeClassifierCV's grid in MiniRocket's classifier
LIMIT = 2_000  # the smaller of examples and features: a 2,000² eigendecomposition, ~2 s here
MAX_ENTRIES = 20_000_000  # examples × features held at once (160 MB as float64)
TEMPERATURES = np.logspace(-1, 2, 61)


def solvable(examples: int, features: int) -> bool:
    """Whether :func:`fit` solves this many rows of this many features within a build's time
    and memory."""
    return min(examples, features) <= LIMIT and examples * features <= MAX_ENTRIES


class Ridge(NamedTuple):
    """A fitted map ``x @ kernel + bias``, its penalty and its leave-one-out predictions of the
    rows it was fitted on (what each row's prediction would be had it been left out)."""

    kernel: np.ndarray
    bias: np.ndarray
    alpha: float
    held_out: np.ndarray


def fit(x: np.ndarray, y: np.ndarray) -> Ridge:
    """Ridge regression of ``y`` (rows × outputs) on ``x`` (rows × features) with an
    unpenalised intercept, the penalty of :data:`ALPHAS` with the least leave-one-out squared
    error summed over the outputs."""
    x, y = np.asarray(x, "float64"), np.asarray(y, "float64").reshape(len(x), -1)
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    centred, targets = x - x_mean, y - y_mean
    eigenvalues, vectors = _left_singular(centred)
    projected = vectors.T @ targets
    best: tuple[float, float, np.ndarray] | None = None
    for alpha in ALPHAS:
        shrink = eigenvalues / (eigenvalues + alpha)
        fitted = vectors @ (shrink[:, None] * projected)
        # the hat matrix's diagonal, plus the intercept's 1/n
        leverage = (vectors ** 2) @ shrink + 1.0 / len(x)
        residuals = (targets - fitted) / (1.0 - leverage)[:, None]
        error = float(np.sum(residuals ** 2))
        if best is None or error < best[0]:
            best = (error, float(alpha), y - residuals)
    _, alpha, held_out = best
    kernel = centred.T @ (vectors @ (projected / (eigenvalues + alpha)[:, None]))
    return Ridge(kernel, y_mean - x_mean @ kernel, alpha, held_out)


def _left_singular(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The squared singular values of ``x`` and its left singular vectors (one column each),
    from the eigendecomposition of the smaller of ``x xᵀ`` and ``xᵀ x``."""
    if len(x) <= x.shape[1]:
        eigenvalues, vectors = np.linalg.eigh(x @ x.T)
        return np.maximum(eigenvalues, 0.0), vectors
    eigenvalues, right = np.linalg.eigh(x.T @ x)
    kept = eigenvalues > eigenvalues[-1] * 1e-12  # directions x does not span have no left one
    return eigenvalues[kept], (x @ right[:, kept]) / np.sqrt(eigenvalues[kept])


def temperature(scores: np.ndarray, labels: np.ndarray) -> float:
    """The factor that turns a ridge classifier's scores into the softmax's logits: the one of
    :data:`TEMPERATURES` with the least cross-entropy of held-out ``scores`` against ``labels``
    (class indices), as Platt scaling calibrates an SVM on scores it did not fit."""
    def loss(t: float) -> float:
        logits = t * scores
        logits = logits - logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        return float(-log_p[np.arange(len(labels)), labels].mean())

    return float(min(TEMPERATURES, key=loss))
