"""Time series: windows of one numeric series, to forecast the value ``horizon`` steps after
each window's last ``lookback`` values.

``series:PATH`` reads a CSV or Parquet file (local, a volume, ``gs://``, ``s3://``) in row
order, its ``--target`` column the series; ``sensor`` is the generated hourly series
(:mod:`trial_image.data.generated`). Missing values are not imputed: a window or target that
touches one is left out, and said.

Splits are chronological, not hashed: a forecast is judged on the future. The windows whose
targets are among the last 20 % of the values are the test split, those whose targets are among
the latest ``--validation-split`` of the rest validation, the others the training split: the
test targets are the same whatever ``--lookback`` and ``--horizon`` a trial chose. A window's
values may lie in the split before (the past is known when forecasting), its target never
does. As the series grows, the newest values become the test split, so champion and
challenger are compared on the same windows only when trained on the same series (promotion
says when the test data differ, by digest).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from trial_image.data.dataset import ArraySplit, Dataset
from trial_image.data.splits import TEST_FRACTION
from trial_image.errors import InputError
from trial_image.families import SERIES


@dataclass(frozen=True)
class Window:
    """A series' window: ``--lookback`` values forecasting the one ``--horizon`` steps after."""

    lookback: int = 24
    horizon: int = 1


def load_series(name: str, target: str | None, window: Window, validation_split: float,
                test: bool) -> Dataset:
    lookback, horizon = window.lookback, window.horizon
    if lookback < 1 or horizon < 1:
        raise InputError(f"--lookback and --horizon must be at least 1, got {lookback} and "
                         f"{horizon}")
    values = _read(name, target)
    count = len(values) - lookback - horizon + 1
    if count < 10:
        raise InputError(f"{name}: {len(values)} values make {max(count, 0)} windows of "
                         f"{lookback} + {horizon}; at least 10 are needed")
    starts = np.arange(count)
    windows = values[starts[:, None] + np.arange(lookback)]
    when = starts + lookback + horizon - 1  # the index of each window's target
    targets = values[when]
    whole = ~np.isnan(windows).any(axis=1) & ~np.isnan(targets)
    test_from = round(len(values) * (1 - TEST_FRACTION))
    validation_from = test_from - round(test_from * validation_split)
    place = np.where(when >= test_from, 2, np.where(when >= validation_from, 1, 0))
    parts = [ArraySplit(split, windows[whole & (place == k)], targets[whole & (place == k)])
             for k, split in enumerate(("train", "validation", "test"))]
    if parts[0].count < 1:
        raise InputError(f"{name}: no window left for training")
    print(f"{name}: {len(values)} values, {int(whole.sum())} windows of {lookback} forecasting "
          f"{horizon} step(s) ahead ({int((~whole).sum())} touching a missing value left out): "
          f"{parts[0].count} train, {parts[1].count} validation, {parts[2].count} test, in time "
          "order", file=sys.stderr)
    train, validation, tested = parts
    return Dataset(name=name, train=train, validation=validation, test=tested if test else None,
                   num_classes=0, input_shape=(lookback,), scale=1.0, task="regression",
                   family=SERIES)


def _read(name: str, target: str | None) -> np.ndarray:
    if name == "sensor":
        from trial_image.data.generated import sensor

        return sensor()
    path = name.partition(":")[2]
    if target is None:
        raise InputError(f"--dataset {name} needs --target COLUMN (the series)")
    import pandas as pd

    from trial_image.data.tables import read_file

    frame = read_file(name, path, "parquet" if path.endswith(".parquet") else "csv")
    if target not in frame.columns:
        raise InputError(f"--target: no column {target!r} in {path}")
    values = pd.to_numeric(frame[target], errors="coerce")
    if (values.isna() & frame[target].notna()).any():
        raise InputError(f"--target {target!r}: a series needs numbers")
    return values.to_numpy(dtype="float32", na_value=np.nan)
