"""``tfrecord:GLOB``: sharded TFRecord files, read as a dataset (:mod:`~trial_image.data.
shard_writer` writes them from a folder: convert once, train many trials from the shards).

The format (``docs/data.md``): each record is a ``tf.train.Example`` with the encoded image file
as it was (JPEG/PNG/BMP/GIF bytes, feature ``image``), its integer class (``label``) and its
identity, the path relative to the folder (``key``). A shard's name starts with its split:
``train-``, ``validation-`` or ``test-``. Beside the shards, ``dataset.json`` names the classes,
the feature keys (rename them there for shards written by other tools) and each split's number
of examples (counted with one pass when absent). The writer assigns splits with the folder's
rule (:mod:`~trial_image.data.splits`), so shards and folder give the same splits.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trial_image.data import splits as rule
from trial_image.data.dataset import SHUFFLE_BUFFER, Dataset, Split, finish
from trial_image.data.images import Decoding, digest
from trial_image.data.storage import Storage, source_error, storage_for
from trial_image.data.unreadable import Tally, Unreadable
from trial_image.errors import InputError

FORMAT = "nasflow.tfrecord/v1"
FEATURES = {"image": "image", "label": "label", "key": "key"}
METADATA = "dataset.json"
EXAMPLES_PER_SHARD = 2048
CYCLE = 8  # shards read at once
PARSE_BATCH = 256  # records parsed at once (one parse_example: a third of the CPU of 256 single)
SHUFFLE_SEED = 1234  # the writer's record order
MIN_RECORD_BYTES = 16  # TFRecord framing alone: a count above size / 16 is not the shards'


@dataclass(frozen=True, eq=False)
class ShardSplit(Split):
    """Records streamed from shards: shard order shuffled, records interleaved from
    :data:`CYCLE` shards, shuffled in a buffer of :data:`SHUFFLE_BUFFER` encoded records, parsed
    :data:`PARSE_BATCH` at a time, then decoded one by one."""

    name: str
    storage: Storage
    shards: tuple[str, ...]
    count: int  # type: ignore[misc]
    digest: str  # type: ignore[misc]
    features: dict[str, str]
    decoding: Decoding
    part: int | None = None  # of halves(): records at even (0) or odd (1) positions
    cache: str | None = None
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tally", Tally(self.count, lambda i: f"record {i + 1} of a pass"))

    def unreadable(self) -> Unreadable:
        return self.tally.state(self.name)

    def _records(self, shuffle_seed: int | None) -> Any:
        import tensorflow as tf

        files = tf.data.Dataset.from_tensor_slices(list(self.shards))
        if shuffle_seed is not None and self.part is None:
            files = files.shuffle(len(self.shards), seed=shuffle_seed,
                                  reshuffle_each_iteration=True)
        if not self.storage.native:  # TensorFlow cannot open it: a local copy first
            local = self.storage.local
            files = files.map(lambda path: tf.numpy_function(
                lambda p: local(p.decode()), [path], tf.string))
        # a damaged shard (garbage appended, cut short) ends early instead of ending the pass;
        # its lost records are counted (unreadable())
        records = files.interleave(lambda f: tf.data.TFRecordDataset(f).ignore_errors(),
                                   cycle_length=CYCLE, num_parallel_calls=tf.data.AUTOTUNE,
                                   deterministic=True)
        if self.part is not None:
            records = records.enumerate().filter(
                lambda i, _: i % 2 == self.part).map(lambda _, record: record)
        return records

    def _decode(self, records: Any, tally: Tally | None = None) -> Any:
        import tensorflow as tf

        spec = {self.features["image"]: tf.io.FixedLenFeature([], tf.string),
                self.features["label"]: tf.io.FixedLenFeature([], tf.int64)}
        image, label, decode = self.features["image"], self.features["label"], self.decoding

        def examples(batch: Any) -> Any:
            parsed = tf.io.parse_example(batch, spec)
            return parsed[image], tf.cast(parsed[label], tf.int32)

        return (tally or self.tally).tried(
            records.batch(PARSE_BATCH)
            .map(examples, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).unbatch(),
            lambda encoded, label: (decode(encoded), label),
            (decode.placeholder, tf.constant(0, tf.int32)), indexed=False)

    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                drop_remainder: bool = False, augment: str = "none") -> Any:
        if self.cache is None:
            records = self._records(shuffle_seed)
            if shuffle_seed is not None:
                records = records.shuffle(SHUFFLE_BUFFER, seed=shuffle_seed,
                                          reshuffle_each_iteration=True)
            ds = self._decode(records)
        else:
            ds = self._cached(self._decode(self._records(None)), shuffle_seed)
        return finish(ds, batch_size, shuffle_seed, drop_remainder, augment)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        sample = Tally(n, str)  # a sample, not a pass: not counted
        return next(self._decode(self._records(None).take(n), sample).batch(n)
                    .as_numpy_iterator())

    def joined(self, other: Split, name: str) -> Split:
        assert isinstance(other, ShardSplit)
        return ShardSplit(name, self.storage, self.shards + other.shards,
                          self.count + other.count,
                          hashlib.sha256(f"{self.digest}{other.digest}".encode()).hexdigest()[:20],
                          self.features, self.decoding, cache=self.cache)

    def halves(self, seed: int) -> tuple[Split, Split]:
        """By record position (shard order fixed): ⌈n/2⌉ and ⌊n/2⌋ records; ``seed`` only
        orders each half's passes."""
        return tuple(  # type: ignore[return-value]
            ShardSplit(self.name, self.storage, self.shards, (self.count + 1 - part) // 2,
                       f"{self.digest}/{part}", self.features, self.decoding, part)
            for part in (0, 1))


def _pattern(spec: str) -> tuple[str, str]:
    """(folder holding dataset.json, glob of shards) for ``tfrecord:`` ``GLOB`` or folder."""
    if any(c in spec for c in "*?["):
        head = spec[:min(spec.index(c) for c in "*?[" if c in spec)]
        return head.rsplit("/", 1)[0] if "/" in head else ".", spec
    return spec.rstrip("/"), spec.rstrip("/") + "/*.tfrecord"


def load_shards(spec: str, image_size: tuple[int, int], test: bool, cache: str | None
                ) -> Dataset:
    import tensorflow as tf

    where = f"tfrecord:{spec}"
    folder, pattern = _pattern(spec)
    storage = storage_for(pattern)
    try:
        shards = storage.glob(pattern)
        metadata = json.loads(storage.read_bytes(posixpath.join(folder, METADATA)))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: {METADATA} is not JSON ({exc})") from None
    except (FileNotFoundError, tf.errors.NotFoundError):
        raise InputError(f"{where}: no {METADATA} in {folder} (python -m trial_image data "
                         f"writes it; docs/data.md has its format)") from None
    except Exception as exc:  # noqa: BLE001 - storage errors differ by backend
        raise source_error(where, exc) from None
    classes = metadata.get("classes") if isinstance(metadata, dict) else None
    features = {**FEATURES, **(metadata.get("features") or {})} if classes else {}
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise InputError(f"{where}: {METADATA} needs \"classes\": a list of class names")
    if not all(isinstance(v, str) and v for v in features.values()):
        raise InputError(f"{where}: {METADATA} \"features\" maps image/label/key to names")
    by_split = {s: tuple(p for p in shards if posixpath.basename(p).startswith(f"{s}-"))
                for s in rule.SPLITS}
    for needed in ("train", "validation") + (("test",) if test else ()):
        if not by_split[needed]:
            raise InputError(f"{where}: no {needed}-* shards among {len(shards)} file(s)")
    try:
        first = next(iter(tf.data.TFRecordDataset(storage.local(by_split["train"][0]))))
        parsed = tf.io.parse_single_example(
            first, {features["image"]: tf.io.FixedLenFeature([], tf.string)})
    except Exception as exc:  # noqa: BLE001 - a corrupt or foreign shard, one line
        raise InputError(f"{where}: cannot read feature {features['image']!r} of the first "
                         f"train record ({exc.__class__.__name__})") from None
    decoding = Decoding.detect([parsed[features["image"]].numpy()], image_size, where)
    counts = (metadata.get("splits") or {})

    def split(name: str) -> ShardSplit:
        files = by_split[name]
        entries = [storage.describe(f) for f in files]
        count = (counts.get(name) or {}).get("examples")
        size = sum(e.size for e in entries)
        if isinstance(count, int) and count > size // MIN_RECORD_BYTES:
            raise InputError(f"{where}: {METADATA} says the {name} split has {count} examples; "
                             f"its {len(files)} shard(s) of {size} bytes hold at most "
                             f"{size // MIN_RECORD_BYTES}")
        if not isinstance(count, int) or count < 1:
            count = int(tf.data.TFRecordDataset([storage.local(f) for f in files])
                        .reduce(np.int64(0), lambda n, _: n + 1))
        return ShardSplit(name, storage, files, count, digest(entries), features, decoding,
                          cache=cache)

    return Dataset(name=where, train=split("train"), validation=split("validation"),
                   test=split("test") if test else None, num_classes=len(classes),
                   input_shape=(*image_size, decoding.channels), scale=1.0 / 255.0)
