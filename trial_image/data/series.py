"""Time series: windows of one numeric series, to forecast the value ``horizon`` steps after
each window's last ``lookback`` values; or labelled series, to classify (``--task
classification``: each row of the file one series, its ``--target`` column the class and its
other columns, in order, the values: the layout of the UCR/UEA archive's univariate sets).

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
says when the test data differ, by digest). Labelled series are examples like a table's rows:
each one's split is decided by its content (:mod:`trial_image.data.splits`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from trial_image.data.dataset import ArraySplit, Dataset
from trial_image.data.splits import SPLITS, TEST_FRACTION, place
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


def load_labelled(name: str, target: str | None, validation_split: float, test: bool
                  ) -> Dataset:
    """Series classification: one series a row (its values in the other columns' order), one
    class a series; a row with a missing value is left out, and said."""
    import pandas as pd

    from trial_image.data.tables import finite, positions

    frame = _frame(name, target, "the class")
    steps = frame.drop(columns=[target])
    if steps.shape[1] < 2 or frame[target].isna().any():
        raise InputError(f"{name}: a labelled series needs a class in every row and at least 2 "
                         f"value columns besides --target {target!r}")
    numbers = steps.apply(pd.to_numeric, errors="coerce")
    for column in steps.columns:
        wrong = numbers[column].isna() & steps[column].notna()
        if wrong.any():
            raise InputError(f"column {column!r}: data row {int(np.argmax(wrong)) + 1} holds "
                             f"{str(steps[column][wrong].iloc[0])[:40]!r}, not a number")
        finite(np.nan_to_num(numbers[column].to_numpy("float32", na_value=np.nan), nan=0.0),
               f"column {column!r}", steps[column])
    values = numbers.to_numpy("float32", na_value=np.nan)
    labels = frame[target].astype(str).to_numpy(dtype=object)
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise InputError(f"--target {target!r}: a classification needs at least 2 classes")
    y = np.searchsorted(np.array(classes, dtype=object), labels).astype("int32")
    whole = ~np.isnan(values).any(axis=1)
    places = np.array([place(u, TEST_FRACTION, validation_split) for u in positions(frame)])
    parts = [ArraySplit(split, values[whole & (places == split)], y[whole & (places == split)])
             for split in SPLITS]
    if parts[0].count < 1:
        raise InputError(f"{name}: no series left for training")
    print(f"{name}: {len(values)} series of {values.shape[1]} values in {len(classes)} classes "
          f"({int((~whole).sum())} with a missing value left out): {parts[0].count} train, "
          f"{parts[1].count} validation, {parts[2].count} test", file=sys.stderr)
    train, validation, tested = parts
    return Dataset(name=name, train=train, validation=validation, test=tested if test else None,
                   num_classes=len(classes), input_shape=(values.shape[1],), scale=1.0,
                   task="classification", classes=tuple(classes), family=SERIES)


def _read(name: str, target: str | None) -> np.ndarray:
    if name == "sensor":
        from trial_image.data.generated import sensor

        return sensor()
    import pandas as pd

    frame = _frame(name, target, "the series")
    values = pd.to_numeric(frame[target], errors="coerce")
    if (values.isna() & frame[target].notna()).any():
        raise InputError(f"--target {target!r}: a series needs numbers")
    return values.to_numpy(dtype="float32", na_value=np.nan)


def _frame(name: str, target: str | None, what: str) -> Any:
    """``series:PATH``'s file as a DataFrame that has the ``--target`` column (``what`` it is)."""
    from trial_image.data.tables import read_file

    path = name.partition(":")[2]
    if target is None:
        raise InputError(f"--dataset {name} needs --target COLUMN ({what})")
    frame = read_file(name, path, "parquet" if path.endswith(".parquet") else "csv")
    if target not in frame.columns:
        raise InputError(f"--target: no column {target!r} in {path}")
    return frame
