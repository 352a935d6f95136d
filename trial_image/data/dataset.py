"""A dataset as its splits, each a source of ``tf.data`` batches that knows its size and digest.

Arrays (digits, Keras' sets, ``npz:``) are small by nature and held in memory. Files (``dir:``)
and shards (``tfrecord:``) are streamed: a pass reads, decodes and resizes one batch at a time,
so memory does not grow with the number of examples; only their names (and for files the
labels) are listed. Pixels stay in their raw range; the model's first layer rescales them
(``Dataset.scale``), so the served model takes raw pixels too.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

import numpy as np

from trial_image.families import IMAGE, Family

SHUFFLE_BUFFER = 10_000  # examples (shards: records) a streamed pass shuffles among
EVALUATION_BATCH = 256


class Split(ABC):
    """One split: ``count`` examples, a ``digest`` that changes when they change."""

    name: str
    count: int
    digest: str

    @abstractmethod
    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                drop_remainder: bool = False, augment: str = "none") -> Any:
        """A ``tf.data`` pipeline of ``(images, labels)``; shuffled (seeded, reshuffled each
        epoch) when ``shuffle_seed`` is given, with light augmentation when asked."""

    @abstractmethod
    def joined(self, other: Split, name: str) -> Split:
        """This split and ``other`` as one (final training on training + validation)."""

    @abstractmethod
    def halves(self, seed: int) -> tuple[Split, Split]:
        """Two disjoint random halves (the DARTS search's weight and α halves)."""

    @abstractmethod
    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The first ``n`` examples as arrays (calibration, input examples, latency)."""

    def unreadable(self) -> Any:
        """What its passes could not read (:class:`trial_image.data.unreadable.Unreadable`);
        None for data held in memory, read once when loaded."""
        return None

    def _cached(self, ds: Any, shuffle_seed: int | None) -> Any:
        """``--data-cache`` of a streamed split (its ``cache``: "memory" or a folder): decoded
        examples kept after the first pass, then shuffled in a bounded buffer."""
        cache = self.cache  # type: ignore[attr-defined]
        ds = ds.cache("" if cache == "memory" else f"{cache}/{self.name}-{self.digest}")
        if shuffle_seed is not None:
            ds = ds.shuffle(min(self.count, SHUFFLE_BUFFER), seed=shuffle_seed,
                            reshuffle_each_iteration=True)
        return ds

    def arrays(self, batch_size: int = EVALUATION_BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The split in order, one batch of arrays at a time."""
        return self.batches(batch_size).as_numpy_iterator()


def finish(ds: Any, batch_size: int, shuffle_seed: int | None, drop_remainder: bool,
           augment: str) -> Any:
    """Batch, augment (training only), prefetch: what every split's pipeline ends with."""
    import tensorflow as tf

    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    if augment == "light":
        layers = augmentation(shuffle_seed or 0)
        ds = ds.map(lambda images, labels: (layers(images, training=True), labels),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def augmentation(seed: int) -> Any:
    """Light augmentation: random shifts of up to 1/8 of the image (one pixel of an 8×8 digit,
    nearest neighbour, so no blur), in the input pipeline, so the served model has none of it.
    Measured on digits: rotations and zooms, or bilinear shifts, cost accuracy on images this
    small (0.88 instead of 0.98 for a two-block CNN); these shifts do not."""
    import keras

    return keras.Sequential([
        keras.layers.RandomTranslation(0.125, 0.125, fill_mode="constant",
                                       interpolation="nearest", seed=seed),
    ], name="augmentation")


@dataclass(frozen=True, eq=False)
class ArraySplit(Split):
    """A split held in memory (float32 images, int32 labels)."""

    name: str
    x: np.ndarray
    y: np.ndarray

    @property
    def count(self) -> int:  # type: ignore[override]
        return len(self.x)

    @cached_property
    def digest(self) -> str:  # type: ignore[override]
        h = hashlib.sha256(np.ascontiguousarray(self.x).data)
        h.update(np.ascontiguousarray(self.y).data)
        return h.hexdigest()[:20]

    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                drop_remainder: bool = False, augment: str = "none") -> Any:
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y)).cache()
        if shuffle_seed is not None:
            ds = ds.shuffle(len(self.x), seed=shuffle_seed, reshuffle_each_iteration=True)
        return finish(ds, batch_size, shuffle_seed, drop_remainder, augment)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        return self.x[:n], self.y[:n]

    def arrays(self, batch_size: int = EVALUATION_BATCH) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self.x), batch_size):
            yield self.x[start:start + batch_size], self.y[start:start + batch_size]

    def joined(self, other: Split, name: str) -> Split:
        assert isinstance(other, ArraySplit)
        return ArraySplit(name, np.concatenate([self.x, other.x]),
                          np.concatenate([self.y, other.y]))

    def halves(self, seed: int) -> tuple[Split, Split]:
        order = np.random.default_rng(seed).permutation(len(self.x))
        half = len(order) // 2
        return tuple(ArraySplit(self.name, self.x[i], self.y[i])  # type: ignore[return-value]
                     for i in (order[:half], order[half:2 * half]))


@dataclass(frozen=True)
class Dataset:
    """The splits a run asked for: the search reads train and validation; final training
    ``train+validation`` (no validation); ``test`` only when the run is evaluated on it."""

    name: str  # the --dataset value
    train: Split
    validation: Split | None
    test: Split | None
    num_classes: int  # 0 for regression
    input_shape: tuple[int, ...]
    scale: float
    task: str = "classification"
    columns: tuple[tuple[str, str], ...] = ()  # a table's (name, kind), in order
    classes: tuple[str, ...] = ()  # a table's class names, by index
    family: Family = IMAGE  # what a model of it reads

    @property
    def has_validation(self) -> bool:
        return self.validation is not None and self.validation.count > 0

    @property
    def splits(self) -> tuple[Split, ...]:
        return tuple(s for s in (self.train, self.validation, self.test) if s is not None)

    def merged(self) -> Dataset:
        """Training and validation as one training split (final training): no validation."""
        if self.validation is None:
            return self
        return replace(self, train=self.train.joined(self.validation, "train+validation"),
                       validation=None)
