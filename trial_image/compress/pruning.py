"""Magnitude pruning for Keras 3 (``tensorflow-model-optimization`` does not support Keras 3):
Zhu & Gupta 2017, "To prune, or not to prune".

During fine-tuning the sparsity of every convolution and dense kernel rises from 0 to the target
along ``s_t = s_f · (1 − (1 − t/T)³)``, pruned every ``frequency`` steps by zeroing the weights of
smallest magnitude; the masks are applied again after every step, so the optimizer cannot bring
a pruned weight back. Zeros are only a saving once stored as such: the pruned model is exported to
LiteRT and measured compressed (gzip), as a sparse file ships.
"""

from __future__ import annotations

import gzip
import math
from typing import Any

import keras
import numpy as np

from trial_image.builder import OUTPUT_LAYERS


def prunable(model: keras.Model) -> list[Any]:
    """The kernels pruning applies to: convolutions (a separable one's pointwise part) and
    hidden dense layers. Depthwise kernels (nine weights a channel) and the classifier (every
    weight reaches an output; with a wide path, both output layers) are kept whole, as TF-MOT
    advises: pruning them half-way cost digits' small networks points where the rest lost none
    (docs/benchmarks.md). An ensemble's members are pruned each as a model of its own."""
    kernels = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # an ensemble's member
            kernels += prunable(layer)
            continue
        if isinstance(layer, keras.layers.DepthwiseConv2D) or layer is model.layers[-1] or \
                layer.name in OUTPUT_LAYERS:
            continue
        for name in ("kernel", "pointwise_kernel"):
            weight = getattr(layer, name, None)
            if weight is not None:
                kernels.append(weight)
    return kernels


def sparsity(model: keras.Model) -> float:
    """The fraction of prunable weights that are zero."""
    values = [np.asarray(w) for w in prunable(model)]
    return float(sum((v == 0).sum() for v in values) / sum(v.size for v in values))


class MagnitudePruning(keras.callbacks.Callback):
    """The polynomial schedule over ``steps`` training steps, then the target held."""

    def __init__(self, target: float, steps: int, frequency: int = 10) -> None:
        super().__init__()
        if not 0 < target < 1:
            raise ValueError(f"target sparsity must be in (0, 1), got {target}")
        self.target, self.steps, self.frequency = target, max(1, steps), max(1, frequency)
        self.step = 0
        self.masks: dict[int, np.ndarray] = {}

    def scheduled(self, step: int) -> float:
        progress = min(step / self.steps, 1.0)
        return self.target * (1 - (1 - progress) ** 3)

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.step += 1
        if self.step % self.frequency == 0 or self.step >= self.steps:
            level = self.scheduled(self.step)
            for i, weight in enumerate(prunable(self.model)):
                values = np.abs(np.asarray(weight))
                count = math.floor(level * values.size)
                if count:
                    threshold = np.partition(values.ravel(), count - 1)[count - 1]
                    self.masks[i] = values > threshold
        for i, weight in enumerate(prunable(self.model)):
            if i in self.masks:
                weight.assign(np.asarray(weight) * self.masks[i])


def compressed_size(content: bytes) -> int:
    """Bytes of the file gzip-compressed: what a sparse model costs to ship and store."""
    return len(gzip.compress(content, compresslevel=9, mtime=0))
