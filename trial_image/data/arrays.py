"""The datasets held in memory: scikit-learn's bundled digits (the offline default), Keras'
downloadable sets and ``npz:PATH``. Small by nature; their splits are drawn by a seeded,
stratified shuffle (:data:`SPLIT_SEED`, never the trial's ``--seed``), as they always were, so
every trial of a search is scored on the same validation images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from trial_image.data.dataset import ArraySplit, Dataset
from trial_image.data.splits import TEST_FRACTION
from trial_image.errors import InputError

SPLIT_SEED = 1234
KERAS_DATASETS = ("mnist", "fashion_mnist", "cifar10", "cifar100")


def load_arrays(name: str, validation_split: float, test: bool) -> Dataset:
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x_rest, x_test, y_rest, y_test = _split(digits.images[..., None], digits.target,
                                                TEST_FRACTION)
        scale = 1.0 / 16.0
    elif name.startswith("npz:"):
        (x_rest, y_rest), (x_test, y_test) = _npz(Path(name[4:]))
        scale = 1.0 / 255.0 if x_rest.dtype == np.uint8 else 1.0
    else:
        (x_rest, y_rest), (x_test, y_test) = _keras_dataset(name)
        scale = 1.0 / 255.0
    x_train, x_val, y_train, y_val = _split(x_rest, y_rest, validation_split)
    labels = np.concatenate([y_train, y_val, y_test])

    def split(split_name: str, x: np.ndarray, y: np.ndarray) -> ArraySplit:
        return ArraySplit(split_name, x.astype("float32"), y.astype("int32"))

    return Dataset(
        name=name, train=split("train", x_train, y_train),
        validation=split("validation", x_val, y_val),
        test=split("test", x_test, y_test) if test else None,
        num_classes=int(labels.max()) + 1,
        input_shape=tuple(int(d) for d in x_train.shape[1:]),  # type: ignore[arg-type]
        scale=scale)


def _split(x: np.ndarray, y: np.ndarray, fraction: float):
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction, random_state=SPLIT_SEED, stratify=y)
    except ValueError:  # a class too small to stratify: fall back to a plain seeded split
        return train_test_split(x, y, test_size=fraction, random_state=SPLIT_SEED)


def _images(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or len(x) == 0:
        raise InputError(f"{where}: images must be (N, H, W) or (N, H, W, C), got {x.shape}")
    return x


def _labels(y: np.ndarray, n: int, where: str) -> np.ndarray:
    y = np.asarray(y).reshape(-1)
    if len(y) != n or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise InputError(f"{where}: labels must be {n} non-negative integers")
    return y


def _keras_dataset(name: str):
    import keras

    try:
        (x_train, y_train), (x_test, y_test) = getattr(keras.datasets, name).load_data()
    except Exception as exc:  # noqa: BLE001 - any download/cache failure means the same to users
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"
        raise InputError(
            f"cannot load {name} through keras.datasets ({exc.__class__.__name__}); it needs "
            f"network access or a pre-filled cache in {cache}; or use npz:PATH / dir:PATH"
        ) from None
    return ((_images(x_train, name), _labels(y_train, len(x_train), name)),
            (_images(x_test, name), _labels(y_test, len(x_test), name)))


def _npz(path: Path):
    where = f"npz:{path}"
    if not path.is_file():
        raise InputError(f"{where}: no such file")
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in arrays]
            if missing:
                raise InputError(f"{where}: missing array(s) {', '.join(missing)}")
            x_train, x_test = _images(arrays["x_train"], where), _images(arrays["x_test"], where)
            return ((x_train, _labels(arrays["y_train"], len(x_train), where)),
                    (x_test, _labels(arrays["y_test"], len(x_test), where)))
    except (OSError, ValueError) as exc:
        raise InputError(f"{where}: not a readable .npz file ({exc})") from None
