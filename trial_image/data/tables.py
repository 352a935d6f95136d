"""Tables: a CSV or Parquet file (local, a mounted volume, ``gs://``, ``s3://``) or one of
scikit-learn's bundled tables, as feature columns and a target.

Each column is numeric, categorical or text: inferred from its values (numbers are numeric;
strings of five words or more on average are text; anything else is categorical) unless
``--column-types`` says otherwise (``ignore`` drops a column), and said on stderr. A text must
be the only feature column: it makes the text family (:mod:`trial_image.builder.sequences`). A
categorical value is kept as text (``"3"`` for an integer code); a missing one is ``""``. A
missing number is NaN. The model's first layers normalise, impute and embed them
(:mod:`trial_image.builder.tables`), so the served model takes the raw rows.

The task is inferred from the target unless ``--task`` says it: text, or integers with few
distinct values, make a classification; other numbers a regression. Each row's split is decided
by its content (:mod:`trial_image.data.splits`): appending rows never moves one, and identical
rows always share a split.

A table is read into memory once (columns as NumPy arrays); at 100 bytes a row, ten million
rows take about 1 GB.
"""

from __future__ import annotations

import csv
import hashlib
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from trial_image.data.dataset import EVALUATION_BATCH, Dataset, Split, finish
from trial_image.data.splits import TEST_FRACTION, place
from trial_image.errors import InputError
from trial_image.families import TABLE, TEXT
from trial_image.spec import COLUMN_KINDS
from trial_image.tasks import TASKS

BUNDLED = ("breast_cancer", "wine", "diabetes", "tickets")
MAX_CLASSES = 50  # integer targets with at most this many values are classes
TEXT_WORDS = 5  # a column of strings with at least this many words on average is text
MAX_HEADER = 1 << 20  # bytes of a CSV's header line
KINDS = (*COLUMN_KINDS, "ignore")  # --column-types: what a model reads, or nothing


@dataclass(frozen=True)
class TableOptions:
    """The flags of tables, texts and series (``--target``, ``--task``, ``--column-types``)."""

    target: str | None = None
    task: str | None = None
    column_types: dict[str, str] | None = None


@dataclass(frozen=True, eq=False)
class TableSplit(Split):
    """Rows held as one array per column: float32 with NaN, or text with ``""``; ``y`` holds
    class indices (int32) or targets (float32)."""

    name: str
    columns: dict[str, np.ndarray]
    y: np.ndarray

    @property
    def count(self) -> int:  # type: ignore[override]
        return len(self.y)

    @cached_property
    def digest(self) -> str:  # type: ignore[override]
        h = hashlib.sha256()
        for name, values in self.columns.items():
            h.update(name.encode())
            h.update(values.tobytes() if values.dtype.kind == "f"
                     else "\x1f".join(values.tolist()).encode())
        h.update(np.ascontiguousarray(self.y).data)
        return h.hexdigest()[:20]

    def batches(self, batch_size: int, shuffle_seed: int | None = None,
                drop_remainder: bool = False, augment: str = "none") -> Any:
        import tensorflow as tf

        features = {name: values[:, None] for name, values in self.columns.items()}
        ds = tf.data.Dataset.from_tensor_slices((features, self.y))
        if shuffle_seed is not None:
            ds = ds.shuffle(self.count, seed=shuffle_seed, reshuffle_each_iteration=True)
        return finish(ds, batch_size, shuffle_seed, drop_remainder, "none")

    def _rows(self, index: Any) -> TableSplit:
        return TableSplit(self.name, {k: v[index] for k, v in self.columns.items()},
                          self.y[index])

    def take(self, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        part = self._rows(slice(0, n))
        return part.features(), part.y

    def features(self) -> dict[str, np.ndarray]:
        """The columns as a model's inputs: one ``(rows, 1)`` array per column."""
        return {name: values[:, None] for name, values in self.columns.items()}

    def arrays(self, batch_size: int = EVALUATION_BATCH
               ) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        for start in range(0, self.count, batch_size):
            yield self._rows(slice(start, start + batch_size)).take(batch_size)

    def joined(self, other: Split, name: str) -> Split:
        assert isinstance(other, TableSplit)
        return TableSplit(name, {k: np.concatenate([v, other.columns[k]])
                                 for k, v in self.columns.items()},
                          np.concatenate([self.y, other.y]))

    def halves(self, seed: int) -> tuple[Split, Split]:
        order = np.random.default_rng(seed).permutation(self.count)
        half = self.count // 2
        return self._rows(order[:half]), self._rows(order[half:2 * half])


def load_table(name: str, options: TableOptions, validation_split: float, test: bool) -> Dataset:
    frame, target, source = _read(name, options.target)
    if target not in frame.columns:
        raise InputError(f"--target: no column {target!r} in {source}; columns: "
                         f"{', '.join(map(str, frame.columns))[:500]}")
    kinds = _kinds(frame, target, options.column_types or {})
    y_raw = frame[target]
    if y_raw.isna().any():
        raise InputError(f"--target {target!r}: {int(y_raw.isna().sum())} row(s) have no value")
    task = options.task or _infer_task(y_raw)
    if task not in TASKS:
        raise InputError(f"--task must be {' or '.join(TASKS)}, got {task!r}")
    columns = {name: _column(frame[name], kind) for name, kind in kinds.items()}
    for column, values in columns.items():
        if kinds[column] == "numeric":  # missing (NaN) is imputed; infinite is not a number
            finite(np.where(np.isnan(values), 0, values), f"column {column!r}", frame[column])
        elif kinds[column] == "text" and not any(text.strip() for text in values):
            raise InputError(f"column {column!r}: every text is empty or blank; a text model "
                             "needs words")
    if task == "classification":
        labels = y_raw.astype(str).to_numpy(dtype=object)
        classes = sorted(set(labels.tolist()))
        if len(classes) < 2:
            raise InputError(f"--target {target!r}: a classification needs at least 2 classes")
        y = np.searchsorted(np.array(classes, dtype=object), labels).astype("int32")
    else:
        try:
            y = y_raw.to_numpy(dtype="float32")
        except (TypeError, ValueError):
            raise InputError(f"--target {target!r}: a regression needs numbers") from None
        finite(y, f"--target {target!r}", y_raw)
        classes = []
    print(f"{source}: {len(y)} rows, target {target!r} ({task}"
          f"{f', {len(classes)} classes' if classes else ''}), columns "
          + ", ".join(f"{n}:{k}" for n, k in kinds.items())[:2000], file=sys.stderr)
    places = np.array([place(u, TEST_FRACTION, validation_split) for u in positions(frame)],
                      dtype=object)
    full = TableSplit("all", columns, y)

    def split(which: str) -> TableSplit:
        part = full._rows(places == which)
        return TableSplit(which, part.columns, part.y)

    train = split("train")
    if train.count == 0:
        raise InputError(f"{source}: no rows in the training split")
    return Dataset(name=name, train=train, validation=split("validation"),
                   test=split("test") if test else None, num_classes=len(classes),
                   input_shape=(len(kinds),), scale=1.0, task=task,
                   columns=tuple(kinds.items()), classes=tuple(classes),
                   family=TEXT if "text" in kinds.values() else TABLE)


def _read(name: str, target: str | None) -> tuple[Any, str, str]:
    import pandas as pd

    if name == "tickets":
        from trial_image.data.generated import tickets

        texts, labels = tickets()
        return pd.DataFrame({"text": texts, "team": labels}), target or "team", \
            "the generated tickets"
    if name in BUNDLED:
        from sklearn import datasets

        bunch = getattr(datasets, f"load_{name}")(as_frame=True)
        frame = bunch.frame
        return frame, target or "target", f"scikit-learn's {name}"
    kind, _, path = name.partition(":")
    if target is None:
        raise InputError(f"--dataset {kind}:PATH needs --target COLUMN")
    frame = read_file(name, path, kind)
    return frame, target, path


def read_file(name: str, path: str, kind: str) -> Any:
    """The CSV or Parquet file at ``path`` (any storage) as a DataFrame with unique text column
    names; InputError naming ``--dataset name`` if it cannot be read."""
    import pandas as pd

    from trial_image.data.storage import source_error, storage_for

    local = Path(path)
    if "://" not in path and local.exists() and not local.is_file():  # /dev/zero, a FIFO
        raise InputError(f"--dataset {name}: not a regular file")
    try:
        raw = storage_for(path).read_bytes(path)
    except Exception as exc:  # noqa: BLE001 - every storage error becomes an input error
        raise source_error(f"--dataset {name}", exc) from None
    if kind == "csv":
        _check_header(name, raw)
    try:
        if kind == "parquet":
            frame = pd.read_parquet(io.BytesIO(raw))
        else:
            frame = pd.read_csv(io.BytesIO(raw), keep_default_na=True, low_memory=False)
    except Exception as exc:  # noqa: BLE001 - a malformed file is the user's input
        raise InputError(f"--dataset {name}: cannot read it as {kind}: "
                         f"{str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
                         ) from None
    frame.columns = [str(c) for c in frame.columns]
    if len(set(frame.columns)) != len(frame.columns):
        raise InputError(f"--dataset {name}: column names must be unique")
    return frame


def _check_header(name: str, raw: bytes) -> None:
    """The header line: ends within MAX_HEADER bytes (a one-line file of hundreds of MB is not
    parsed to find that out), and names each column once (pandas would rename a repeated ``a``
    to ``a.1`` without a word)."""
    end = raw.find(b"\n", 0, MAX_HEADER)
    if end < 0 and len(raw) > MAX_HEADER:
        raise InputError(f"--dataset {name}: its first line (the header) is longer than "
                         f"{MAX_HEADER} bytes")
    header = raw[:end if end >= 0 else len(raw)].decode("utf-8", "replace").strip("\r\ufeff")
    seen: dict[str, int] = {}
    for position, column in enumerate(next(csv.reader([header]), []), start=1):
        if column in seen:
            raise InputError(f"--dataset {name}: columns {seen[column]} and {position} are both "
                             f"named {column[:100]!r}; column names must be unique")
        seen[column] = position


def _kinds(frame: Any, target: str, overrides: dict[str, str]) -> dict[str, str]:
    import pandas as pd

    unknown = sorted(set(overrides) - set(frame.columns))
    if unknown:
        raise InputError(f"--column-types: no column(s) {', '.join(unknown)}")
    kinds = {}
    for name in frame.columns:
        if name == target or overrides.get(name) == "ignore":
            continue
        inferred = _infer_kind(frame[name])
        kinds[name] = overrides.get(name, inferred)
        if kinds[name] == "numeric" and inferred != "numeric":
            try:
                pd.to_numeric(frame[name].dropna())
            except (TypeError, ValueError):
                raise InputError(f"--column-types: column {name!r} is not numeric") from None
    if not kinds:
        raise InputError("the table has no feature columns besides the target")
    texts = [name for name, kind in kinds.items() if kind == "text"]
    if texts and len(kinds) > 1:
        raise InputError(f"column {texts[0]!r} is text: a text must be the only feature column "
                         f"(the text family); drop the others with --column-types "
                         f"{','.join(f'{n}=ignore' for n in kinds if n != texts[0])[:200]}")
    return kinds


def _infer_kind(values: Any) -> str:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return "numeric"
    words = values.dropna().astype(str).str.split().str.len()
    return "text" if len(words) and words.mean() >= TEXT_WORDS else "categorical"


def finite(values: np.ndarray, what: str, raw: Any) -> None:
    """InputError naming the first row whose number is infinite (or beyond float32)."""
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise InputError(f"{what}: data row {bad[0] + 1} holds {str(raw.iloc[bad[0]])[:40]!r}, "
                         f"not a finite number ({len(bad)} such row(s))")


def _column(values: Any, kind: str) -> np.ndarray:
    import pandas as pd

    if kind == "numeric":
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype="float32", na_value=np.nan)
    return text_values(values)


def text_values(values: Any) -> np.ndarray:
    """A categorical column as text: numbers without a trailing ``.0`` (``3``, not ``3.0``,
    whether the file stored them as integers or as floats with gaps), missing values ``""``."""
    import pandas as pd

    series = pd.Series(values)
    out = np.empty(len(series), dtype=object)
    for i, value in enumerate(series.tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
            out[i] = ""
        elif isinstance(value, float) and value.is_integer():
            out[i] = str(int(value))
        else:
            out[i] = str(value)
    return out.astype(str).astype(object)


def _infer_task(target: Any) -> str:
    import pandas as pd

    if not pd.api.types.is_numeric_dtype(target) or pd.api.types.is_bool_dtype(target):
        return "classification"
    values = target.to_numpy(dtype="float64")
    integral = bool(np.all(np.mod(values, 1) == 0))
    return "classification" if integral and len(np.unique(values)) <= MAX_CLASSES \
        else "regression"


def positions(frame: Any) -> np.ndarray:
    """Each row's place in [0, 1), from its content: pandas' row hash (SipHash-2-4 with a fixed
    key, the same in every process and on every machine) over the values as text."""
    import pandas as pd

    text = frame.astype(str).where(frame.notna(), "")
    hashes = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    return hashes / 2.0 ** 64
