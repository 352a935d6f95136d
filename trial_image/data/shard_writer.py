"""``python -m trial_image data``: TFRecord shards of a class-per-folder image tree, in the
format :mod:`trial_image.data.shards` reads, splits assigned by the folder's own rule so shards
and folder give the same splits."""

from __future__ import annotations

import argparse
import json
import posixpath
import sys

import numpy as np

from trial_image.data.images import list_folder
from trial_image.data.shards import EXAMPLES_PER_SHARD, FEATURES, FORMAT, METADATA, SHUFFLE_SEED
from trial_image.errors import InputError
from trial_image.numbers import number
from trial_image.paths import writable_folder


def write_shards(source: str, out: str, validation_split: float, per_shard: int) -> dict:
    """Shards of folder ``source`` in ``out`` (local or any TensorFlow file system), split by
    the folder's rule, records shuffled (fixed seed) so every shard mixes classes."""
    import tensorflow as tf

    listing = list_folder(source, validation_split)
    index = {name: i for i, name in enumerate(listing.classes)}
    tf.io.gfile.makedirs(out)
    counts = {}
    for name, group in listing.members.items():
        order = np.random.default_rng(SHUFFLE_SEED).permutation(len(group))
        shards = -(-len(group) // per_shard)
        for shard in range(shards):
            path = posixpath.join(out, f"{name}-{shard:05d}-of-{shards:05d}.tfrecord")
            with tf.io.TFRecordWriter(path) as writer:
                for i in order[shard * per_shard:(shard + 1) * per_shard]:
                    entry, label = group[i]
                    encoded = listing.storage.read_bytes(
                        listing.storage.join(source, entry.relative))
                    writer.write(tf.train.Example(features=tf.train.Features(feature={
                        "image": tf.train.Feature(bytes_list=tf.train.BytesList(
                            value=[encoded])),
                        "label": tf.train.Feature(int64_list=tf.train.Int64List(
                            value=[index[label]])),
                        "key": tf.train.Feature(bytes_list=tf.train.BytesList(
                            value=[entry.relative.encode()])),
                    })).SerializeToString())
        counts[name] = {"examples": len(group), "shards": shards}
    metadata = {"format": FORMAT, "source": f"dir:{source}", "classes": listing.classes,
                "features": FEATURES, "validation_split": validation_split, "splits": counts}
    with tf.io.gfile.GFile(posixpath.join(out, METADATA), "w") as f:
        f.write(json.dumps(metadata, indent=2))
    return metadata


def main(argv: list[str] | None = None) -> int:
    """``python -m trial_image data`` and ``nasflow-data``: exit 0, or 2 on bad input."""
    try:
        return _convert(sys.argv[1:] if argv is None else argv)
    except InputError as exc:
        print(f"data failed: {exc}", file=sys.stderr)
        return exc.exit_code


def _convert(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m trial_image data", allow_abbrev=False,
        description="Write TFRecord shards (and dataset.json) from a class-per-folder image "
        "tree, splits assigned by the same rule trials use on the folder.")
    p.add_argument("source", help="dir:PATH, the folder to convert")
    p.add_argument("out", help="the folder the shards go to (local, or gs://…)")
    p.add_argument("--validation-split", type=number(0, 1, low_open=True, high_open=True),
                   default=0.2,
                   help="fraction of the non-test examples written as validation shards "
                   "(default 0.2; unused when the folder has validation/)")
    p.add_argument("--examples-per-shard", type=number(1, 10_000_000, integer=True),
                   default=EXAMPLES_PER_SHARD)
    args = p.parse_args(argv)
    if "://" not in args.out:  # a bucket is checked when it is written
        try:
            writable_folder(args.out)
        except argparse.ArgumentTypeError as exc:
            raise InputError(f"out: {exc}") from None
    if not args.source.startswith("dir:"):
        raise InputError(f"source: expected dir:PATH, got {args.source!r}")
    if not 0 < args.validation_split < 1:
        raise InputError(f"--validation-split must be in (0, 1), got {args.validation_split}")
    if args.examples_per_shard < 1:
        raise InputError("--examples-per-shard must be at least 1")
    metadata = write_shards(args.source[4:], args.out, args.validation_split,
                            args.examples_per_shard)
    for name, counts in metadata["splits"].items():
        print(f"{name}: {counts['examples']} examples in {counts['shards']} shard(s)",
              file=sys.stderr)
    return 0
