"""Unreadable files among streamed images (issue 34): skipped, counted, named, logged to MLflow,
and refused (exit 2) above ``--max-unreadable``. A decompression bomb is refused by its header
before it is decoded."""

from __future__ import annotations

import io
import re
import struct
import zlib

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from tests.conftest import run_trial
from trial_image.data import load

pytestmark = pytest.mark.slow


def png(image: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="PNG")
    return out.getvalue()


def bomb(side: int = 10_000) -> bytes:
    """A valid grey PNG of side × side zero pixels (100 MP): a few hundred kB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\0" * (side + 1)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0,
                                                               0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def folder(root, count: int, bad: dict[str, bytes]) -> None:
    """``count`` 8×8 images in 2 classes (brightness tells them apart), then ``bad`` files."""
    rng = np.random.default_rng(0)
    for i in range(count):
        label = i % 2
        (root / f"c{label}").mkdir(parents=True, exist_ok=True)
        pixels = (rng.random((8, 8)) * 60 + label * 150).astype("uint8")
        (root / f"c{label}" / f"{i:05d}.png").write_bytes(png(pixels))
    for name, content in bad.items():
        (root / name).write_bytes(content)


BAD = {"c0/corrupt-1.png": b"\x89PNG\r\n\x1a\n" + b"garbage" * 20,
       "c1/corrupt-2.png": b"not an image at all",
       "c0/corrupt-3.jpg": b"\xff\xd8\xff\xe0" + b"\0" * 50,
       "c1/empty.png": b"",
       "c0/bomb.png": bomb()}


def test_a_bomb_is_refused_by_its_header(tmp_path):
    """Decoded, it would be 100 MP; the pixel bound refuses it unread."""
    import tensorflow as tf

    from trial_image.data.images import MAX_PIXELS, pixels

    assert int(pixels(tf.constant(bomb()))) == 10_000 ** 2 > MAX_PIXELS
    assert int(pixels(tf.constant(png(np.zeros((5, 7), "uint8"))))) == 35
    assert int(pixels(tf.constant(b"no image"))) == -1


def test_unreadable_images_are_skipped_counted_and_named(tmp_path):
    """2,000 images, 3 corrupt, 1 empty, 1 oversized: a trial trains to its end, reports the 5
    and logs the count."""
    root = tmp_path / "images"
    folder(root, 2000, BAD)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_trial(["--dataset", f"dir:{root}", "--image-size", "8x8", "--epochs", "2",
                        "--filters", "4", "--trial-name", "skips"], tmp_path, uri)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "could not be read" in line]
    skipped = sum(int(re.search(r": (\d+) of \d+ examples could not be read", line)[1])
                  for line in lines)
    named = {name for line in lines for name in line.split("(first: ")[1].rstrip(")").split(", ")}
    assert skipped == 5, lines
    assert {str(root / name) for name in BAD} == named
    assert "Traceback" not in result.stderr
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("nasflow").experiment_id])
    assert run.data.metrics["Unreadable-Examples"] == 5
    assert run.data.metrics["Test-Accuracy"] > 0.6  # the readable ones trained (chance: 0.5)


def test_above_the_share_the_data_is_refused(tmp_path):
    root = tmp_path / "images"
    folder(root, 140, {f"c{i % 2}/bad-{i}.png": b"garbage" for i in range(60)})  # 30 %
    result = run_trial(["--dataset", f"dir:{root}", "--image-size", "8x8", "--epochs", "3",
                        "--filters", "4"], tmp_path, f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert result.returncode == 2, result.stderr[-3000:]
    assert "more than --max-unreadable 0.01" in result.stderr
    assert "Traceback" not in result.stderr


def test_shards_skip_damaged_records_and_check_their_count(tmp_path):
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT
    from trial_image.errors import InputError

    root = tmp_path / "images"
    folder(root, 300, {})
    out = tmp_path / "shards"
    written = subprocess.run([sys.executable, "-m", "trial_image", "data", f"dir:{root}",
                              str(out), "--examples-per-shard", "64"], capture_output=True,
                             text=True, timeout=300, env={"PYTHONPATH": str(ROOT),
                                                          "PATH": "/usr/bin:/bin"})
    assert written.returncode == 0, written.stderr
    shard = sorted(out.glob("train-*.tfrecord"))[0]
    shard.write_bytes(shard.read_bytes() + b"garbage appended" * 10)
    data = load(f"tfrecord:{out}/*.tfrecord", image_size=(8, 8))
    read = sum(len(y) for _, y in data.train.arrays())
    assert 0 < read <= data.train.count  # the damaged shard ends early; the pass goes on
    metadata = json.loads((out / "dataset.json").read_text())
    metadata["splits"]["train"]["examples"] = 10 ** 12
    (out / "dataset.json").write_text(json.dumps(metadata))
    with pytest.raises(InputError, match="says the train split has 1000000000000 examples"):
        load(f"tfrecord:{out}/*.tfrecord", image_size=(8, 8))
