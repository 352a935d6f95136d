"""Unreadable examples of streamed data: skipped, counted, named, and refused above a share.

In a folder of millions of images some files are always bad: empty, truncated, not an image, or
a decompression bomb (a small PNG that decodes to 40000×40000 pixels). Each example is read in a
``tf.data`` pipeline of its own whose error yields a placeholder marked unreadable instead of
ending the pass, so every pass sees every example once, a bad one is dropped after it is counted,
and the first few are named. The trial reports the count (and logs it to MLflow) and refuses the
data (exit 2) when the share of unreadable examples exceeds ``--max-unreadable``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trial_image.errors import InputError

MAX_PIXELS = 8192 * 8192  # decoded pixels an image may have (a bomb has billions)
NAMED = 3  # unreadable examples named in the report
CYCLE = 8  # examples read at once


@dataclass(frozen=True)
class Unreadable:
    """What one split's first pass met: examples read (up to the split's count), unreadable
    among them (the same ones fail every pass), and the first unreadable ones' keys (file
    names, or record positions)."""

    split: str
    count: int  # the split's examples
    read: int
    examples: int  # unreadable
    first: tuple[str, ...]

    @property
    def share(self) -> float:
        return self.examples / self.read if self.read else 0.0

    def line(self) -> str:
        return (f"{self.split}: {self.examples} of {self.count} examples could not be read and "
                f"were skipped (first: {', '.join(self.first)})")


class Tally:
    """One split's count of what its pipelines read; its variables are made on first use."""

    def __init__(self, count: int, keys: Callable[[int], str]) -> None:
        self.count = count  # a pass's examples
        self.keys = keys  # the name of example ``i``, for the report
        self.variables: tuple[Any, Any, Any] | None = None

    def _made(self) -> tuple[Any, Any, Any]:
        import tensorflow as tf

        if self.variables is None:
            with tf.init_scope():
                self.variables = (tf.Variable(0, dtype=tf.int64, trainable=False),
                                  tf.Variable(0, dtype=tf.int64, trainable=False),
                                  tf.Variable([-1] * NAMED, dtype=tf.int64, trainable=False))
        return self.variables

    def tried(self, items: Any, load: Callable[..., tuple[Any, Any]],
              placeholder: tuple[Any, Any], indexed: bool = True) -> Any:
        """``(example, label)`` of each item of ``items`` that ``load`` reads without an error,
        in order; the others counted. ``indexed``: an item is the example's index (else its
        position in the pass names it)."""
        import tensorflow as tf

        read, failed, first = self._made()

        def loaded(*item: Any) -> Any:
            return (*load(*item), True)

        def one(position: Any, item: Any) -> Any:
            key = tf.cast(item if indexed else position, tf.int64)

            def keyed(x: Any, y: Any, ok: Any) -> Any:
                return key, x, y, ok

            good = tf.data.Dataset.from_tensors(item).map(loaded).ignore_errors()
            bad = tf.data.Dataset.from_tensors((*placeholder, False))
            return good.concatenate(bad).take(1).map(keyed)

        def count(key: Any, x: Any, y: Any, ok: Any) -> Any:
            n = read.assign_add(1)

            def fail() -> Any:  # counted in the first pass only: the same fail every pass
                m = failed.assign_add(1)
                return tf.cond(m <= NAMED, lambda: first.scatter_nd_update([[m - 1]], [key]),
                               lambda: tf.identity(first))

            tf.cond(tf.logical_or(ok, n > self.count), lambda: tf.identity(first), fail)
            return x, y, ok

        def readable(x: Any, y: Any, ok: Any) -> Any:
            return ok

        def example(x: Any, y: Any, ok: Any) -> Any:
            return x, y

        return (items.enumerate().interleave(one, cycle_length=CYCLE,
                                             num_parallel_calls=tf.data.AUTOTUNE,
                                             deterministic=True)
                .map(count).filter(readable).map(example))

    def state(self, split: str) -> Unreadable:
        if self.variables is None:
            return Unreadable(split, self.count, 0, 0, ())
        read, failed, first = (v.numpy() for v in self.variables)
        names = tuple(self.keys(int(i)) for i in np.asarray(first) if i >= 0)
        return Unreadable(split, self.count, min(int(read), self.count), int(failed), names)


def check(states: list[Unreadable], most: float) -> list[str]:
    """The report's lines; InputError when a split read in full has more than ``most`` of its
    examples unreadable."""
    for state in states:
        if state.read >= state.count and state.share > most:
            raise InputError(f"{state.line()}: more than --max-unreadable {most:g} "
                             f"({state.share:.1%}); fix or remove them")
    return [state.line() for state in states if state.examples]
