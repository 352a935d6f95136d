"""``dir:PATH``: a class-per-folder tree of JPEG/PNG/BMP/GIF files, streamed.

Layout, as Keras' ``image_dataset_from_directory`` reads it: one sub-folder per class (files in
deeper folders belong to their class folder), class labels in sorted name order. Optionally
``train/``, ``validation/`` and ``test/`` at the top, each with the class folders: the splits
present are kept, the others are drawn from ``train/`` by :mod:`~trial_image.data.splits`.
Every file is read, decoded and resized (bilinear, as Keras) when a pass reaches it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trial_image.data import splits as rule
from trial_image.data.dataset import Dataset, Split, finish
from trial_image.data.storage import Entry, Storage, source_error, storage_for
from trial_image.errors import InputError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
LAYOUT = ("train", "validation", "test")


@dataclass(frozen=True)
class Decoding:
    """How encoded image bytes become the model's input: channels (1 or 3) and size."""

    image_size: tuple[int, int]
    channels: int

    def __call__(self, encoded: Any) -> Any:
        import tensorflow as tf

        image = tf.io.decode_image(encoded, channels=self.channels, expand_animations=False)
        image.set_shape([None, None, self.channels])
        return tf.image.resize(image, self.image_size)  # float32, raw 0–255 range

    @classmethod
    def detect(cls, encoded: bytes, image_size: tuple[int, int], where: str) -> Decoding:
        """Grey (1 channel) if the first image is, else RGB (alpha dropped)."""
        import tensorflow as tf

        try:
            channels = int(tf.io.decode_image(encoded, expand_animations=False).shape[-1])
        except (tf.errors.InvalidArgumentError, ValueError) as exc:
            raise InputError(f"{where}: not a JPEG/PNG/BMP/GIF image ({exc.__class__.__name__})"
                             ) from None
        return cls(image_size, 1 if channels <= 2 else 3)


def digest(entries: Iterable[Entry]) -> str:
    """Over each file's relative path, size and version (modification time or ETag): changes
    when a file is added, removed or rewritten, without reading any file."""
    h = hashlib.sha256()
    for e in entries:
        h.update(f"{e.relative}\t{e.size}\t{e.version}\n".encode())
    return h.hexdigest()[:20]


@dataclass(frozen=True, eq=False)
class FileSplit(Split):
    """Image files streamed: only their paths and labels are in memory."""

    name: str
    storage: Storage
    paths: np.ndarray  # full paths, UTF-8 bytes (numpy's str would take 4 bytes a character)
    labels: np.ndarray  # int32
    digest: str  # type: ignore[misc]
    decoding: Decoding
    cache: str | None = None  # None, "memory" or a directory for tf.data's cache files

    @property
    def count(self) -> int:  # type: ignore[override]
        return len(self.paths)

    def _examples(self, indices: Any, upto: int | None = None) -> Any:
        """(image, label) of each index; ``upto``: only the first ``upto`` paths are needed."""
        import tensorflow as tf

        paths, labels = tf.constant(self.paths[:upto]), tf.constant(self.labels[:upto])
        read, decode = self.storage.reader(), self.decoding
        return indices.map(lambda i: (decode(read(tf.gather(paths, i))), tf.gather(labels, i)),
                           num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                drop_remainder: bool = False, augment: str = "none") -> Any:
        import tensorflow as tf

        indices = tf.data.Dataset.range(self.count)
        if self.cache is None:
            # shuffling indices costs 8 bytes an example, whatever the image size
            if shuffle_seed is not None:
                indices = indices.shuffle(self.count, seed=shuffle_seed,
                                          reshuffle_each_iteration=True)
            ds = self._examples(indices)
        else:
            ds = self._cached(self._examples(indices), shuffle_seed)
        return finish(ds, batch_size, shuffle_seed, drop_remainder, augment)

    def take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        import tensorflow as tf

        n = min(n, self.count)
        ds = self._examples(tf.data.Dataset.range(n), upto=n).batch(n)
        return next(ds.as_numpy_iterator())

    def joined(self, other: Split, name: str) -> Split:
        assert isinstance(other, FileSplit)
        return FileSplit(name, self.storage, np.concatenate([self.paths, other.paths]),
                         np.concatenate([self.labels, other.labels]),
                         hashlib.sha256(f"{self.digest}{other.digest}".encode()).hexdigest()[:20],
                         self.decoding, self.cache)

    def halves(self, seed: int) -> tuple[Split, Split]:
        order = np.random.default_rng(seed).permutation(self.count)
        half = self.count // 2
        return tuple(  # type: ignore[return-value]
            FileSplit(self.name, self.storage, self.paths[i], self.labels[i],
                      f"{self.digest}/{part}", self.decoding, None)
            for part, i in enumerate((order[:half], order[half:2 * half])))


@dataclass(frozen=True)
class Listing:
    """A folder's images by split: (entry, class name) pairs, in path order."""

    root: str
    storage: Storage
    classes: list[str]
    members: dict[str, list[tuple[Entry, str]]]


def list_folder(root: str, validation_split: float) -> Listing:
    """Every image under ``root`` with its class and split (:mod:`splits`' rule)."""
    where = f"dir:{root}"
    storage = storage_for(root)
    try:
        if not storage.is_dir(root):
            raise InputError(f"{where}: no such directory")
        entries = sorted((e for e in storage.entries(root)
                          if e.relative.lower().endswith(EXTENSIONS)), key=lambda e: e.relative)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - storage errors differ by backend; one line each
        raise source_error(where, exc) from None
    parts = [e.relative.replace("\\", "/").split("/") for e in entries]
    given = {p[0] for p in parts if len(p) >= 3 and p[0] in LAYOUT}
    explicit = "train" in given
    test = 0.0 if "test" in given else rule.TEST_FRACTION
    validation = 0.0 if "validation" in given else validation_split
    members: dict[str, list[tuple[Entry, str]]] = {s: [] for s in rule.SPLITS}
    for entry, part in zip(entries, parts, strict=True):
        if explicit:
            if len(part) < 3 or part[0] not in LAYOUT:
                continue  # beside train/…/test/: not an example
            split = part[0] if part[0] != "train" else rule.assign(entry.relative, test,
                                                                   validation)
            label = part[1]
        else:
            if len(part) < 2:
                continue  # a file beside the class folders (Keras ignores it too)
            split, label = rule.assign(entry.relative, test, validation), part[0]
        members[split].append((entry, label))
    classes = sorted({label for group in members.values() for _, label in group})
    if not classes:
        raise InputError(f"{where}: no {'/'.join(x[1:].upper() for x in EXTENSIONS[1:])} "
                         f"images in class folders")
    return Listing(root, storage, classes, members)


def load_folder(root: str, validation_split: float, image_size: tuple[int, int], test: bool,
                cache: str | None) -> Dataset:
    listing = list_folder(root, validation_split)
    index = {name: i for i, name in enumerate(listing.classes)}
    for needed in ("train", "validation") + (("test",) if test else ()):
        if not listing.members[needed]:
            raise InputError(f"dir:{root}: the {needed} split is empty "
                             f"({sum(map(len, listing.members.values()))} images in all)")
    first = listing.storage.join(root, listing.members["train"][0][0].relative)
    try:
        encoded = listing.storage.read_bytes(first)
    except Exception as exc:  # noqa: BLE001 - as in list_folder
        raise source_error(f"dir:{root}", exc) from None
    decoding = Decoding.detect(encoded, image_size, first)

    def split(name: str) -> FileSplit:
        group = listing.members[name]
        return FileSplit(
            name, listing.storage,
            np.array([listing.storage.join(root, e.relative).encode() for e, _ in group]),
            np.array([index[label] for _, label in group], dtype=np.int32),
            digest(e for e, _ in group), decoding, cache)

    return Dataset(
        name=f"dir:{root}", train=split("train"), validation=split("validation"),
        test=split("test") if test else None, num_classes=len(listing.classes),
        input_shape=(*image_size, decoding.channels), scale=1.0 / 255.0)
