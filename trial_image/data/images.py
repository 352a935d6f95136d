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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trial_image.data import splits as rule
from trial_image.data.dataset import Dataset, Split, finish
from trial_image.data.storage import Entry, Storage, source_error, storage_for
from trial_image.data.unreadable import MAX_PIXELS, Tally, Unreadable
from trial_image.errors import InputError

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
LAYOUT = ("train", "validation", "test")


@dataclass(frozen=True)
class Decoding:
    """How encoded image bytes become the model's input: channels (1 or 3) and size."""

    image_size: tuple[int, int]
    channels: int

    def __call__(self, encoded: Any) -> Any:
        """The image, resized; an error (the example is then skipped: :mod:`.unreadable`)
        for bytes that are not an image or would decode to more than ``MAX_PIXELS``."""
        import tensorflow as tf

        tf.debugging.assert_less_equal(pixels(encoded), tf.constant(MAX_PIXELS, tf.int64),
                                       message="not an image, or too many pixels")
        image = tf.io.decode_image(encoded, channels=self.channels, expand_animations=False)
        image.set_shape([None, None, self.channels])
        return tf.image.resize(image, self.image_size)  # float32, raw 0–255 range

    @property
    def placeholder(self) -> Any:
        """What stands for an unreadable image until it is dropped."""
        import tensorflow as tf

        return tf.zeros([*self.image_size, self.channels])

    @classmethod
    def detect(cls, samples: list[bytes], image_size: tuple[int, int], where: str
               ) -> Decoding:
        """Grey (1 channel) if the first readable image of ``samples`` is, else RGB (alpha
        dropped)."""
        import tensorflow as tf

        for encoded in samples:
            try:
                if int(pixels(tf.constant(encoded))) > MAX_PIXELS:
                    continue
                channels = int(tf.io.decode_image(encoded, expand_animations=False).shape[-1])
            except (tf.errors.InvalidArgumentError, ValueError):
                continue
            return cls(image_size, 1 if channels <= 2 else 3)
        raise InputError(f"{where}: not a JPEG/PNG/BMP/GIF image: none of the first "
                         f"{len(list(samples))} reads")


def pixels(encoded: Any) -> Any:
    """The pixel count an image's header declares, read from its first bytes (JPEG: its SOF
    marker), without decoding it; -1 for bytes that are none of JPEG, PNG, GIF, BMP."""
    import tensorflow as tf

    head = tf.strings.substr(encoded, 0, 26)
    padded = tf.io.decode_raw(tf.strings.join([head, tf.strings.substr(b"\0" * 26, 0,
                                               26 - tf.strings.length(head))]), tf.uint8)
    byte = tf.cast(padded, tf.int64)

    def number(start: int, size: int, big_endian: bool) -> Any:
        weights = [256 ** (size - 1 - k if big_endian else k) for k in range(size)]
        return tf.reduce_sum(byte[start:start + size] * tf.constant(weights, tf.int64))

    def starts(magic: bytes) -> Any:
        return tf.equal(tf.strings.substr(head, 0, len(magic)), magic)

    return tf.case([
        (starts(b"\x89PNG"), lambda: number(16, 4, True) * number(20, 4, True)),
        (starts(b"GIF8"), lambda: number(6, 2, False) * number(8, 2, False)),
        (starts(b"BM"), lambda: number(18, 4, False) * tf.abs(  # BMP: height may be negative
            tf.cast(tf.bitcast(tf.cast(number(22, 4, False), tf.uint32), tf.int32), tf.int64))),
        (starts(b"\xff\xd8"), lambda: tf.reduce_prod(
            tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64)))],
        default=lambda: tf.constant(-1, tf.int64), exclusive=True)


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
    tally: Tally = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tally", Tally(len(self.paths),
                                                 lambda i: self.paths[i].decode()))

    @property
    def count(self) -> int:  # type: ignore[override]
        return len(self.paths)

    def unreadable(self) -> Unreadable:
        return self.tally.state(self.name)

    def _examples(self, indices: Any, upto: int | None = None) -> Any:
        """(image, label) of each index that reads; ``upto``: only the first ``upto`` paths
        are needed (a sample, not a pass: not counted)."""
        import tensorflow as tf

        paths, labels = tf.constant(self.paths[:upto]), tf.constant(self.labels[:upto])
        read, decode = self.storage.reader(), self.decoding
        tally = self.tally if upto is None else Tally(upto, str)
        return tally.tried(
            indices, lambda i: (decode(read(tf.gather(paths, i))), tf.gather(labels, i)),
            (decode.placeholder, tf.constant(0, tf.int32)))

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
    first = [listing.storage.join(root, e.relative) for e, _ in listing.members["train"][:20]]
    try:
        samples = [listing.storage.read_bytes(path) for path in first]
    except Exception as exc:  # noqa: BLE001 - as in list_folder
        raise source_error(f"dir:{root}", exc) from None
    decoding = Decoding.detect(samples, image_size, f"dir:{root}")

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
