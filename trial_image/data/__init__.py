"""Datasets as train/validation/test splits read through ``tf.data``: arrays in memory for the
small built-in sets, streamed files and shards (local, a mounted volume, ``gs://``, ``s3://``)
for users' data. The test split is evaluated once, after training, and never drives the search.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

from trial_image.data.arrays import KERAS_DATASETS
from trial_image.data.dataset import Dataset, Split
from trial_image.data.series import Window
from trial_image.data.tables import BUNDLED as TABLES
from trial_image.data.tables import TableOptions
from trial_image.errors import InputError

DATASETS_HELP = ("images: digits (default, offline), " + ", ".join(KERAS_DATASETS)
                 + ", npz:PATH, dir:PATH, tfrecord:GLOB; tables and texts: " + ", ".join(TABLES)
                 + " (offline), csv:PATH, parquet:PATH with --target; series: sensor "
                 "(offline), series:PATH with --target, --lookback, --horizon, or with "
                 "--task classification (a series a row) (PATH may be gs:// or s3://)")
CACHES_HELP = ("keep decoded images of streamed data: 'memory', or a folder for tf.data's "
               "cache files (default: none, every pass reads and decodes)")

__all__ = ["DATASETS_HELP", "TABLES", "DataRequest", "Dataset", "Split", "TableOptions",
           "Window", "is_table", "load"]


@dataclass(frozen=True)
class DataRequest:
    """A trial's data flags, the one place of their defaults: what the trial CLI takes (and
    logs as its run's parameters) and what ``python -m trial_image compress`` reads back to load
    a model's data again."""

    dataset: str = "digits"
    validation_split: float = 0.2
    image_size: tuple[int, int] = (32, 32)
    cache: str | None = None
    table: TableOptions = field(default_factory=TableOptions)
    window: Window = field(default_factory=Window)

    def load(self, test: bool = True) -> Dataset:
        return load(self.dataset, self.validation_split, self.image_size, test, self.cache,
                    self.table, self.window)

    @classmethod
    def of(cls, flags: Any) -> DataRequest:
        """From the trial CLI's flags of the same names (``--dataset`` and so on)."""
        return cls(flags.dataset, flags.validation_split, flags.image_size, flags.data_cache,
                   TableOptions(flags.target, flags.task, flags.column_types),
                   Window(flags.lookback, flags.horizon))

    @classmethod
    def logged(cls, dataset: str | None, params: dict[str, str], source: str) -> DataRequest:
        """The request of a run that logged ``params`` (the trial CLI's flags as strings; a
        dict as its repr) on data ``dataset`` (its tag); InputError names ``source``."""
        d = cls()
        try:
            columns = ast.literal_eval(params.get("column_types", "None"))
            size = ast.literal_eval(params.get("image_size", repr(d.image_size)))
            return cls(dataset or d.dataset,
                       float(params.get("validation_split", d.validation_split)),
                       (int(size[0]), int(size[1])), params.get("data_cache"),
                       TableOptions(params.get("target"), params.get("task"), columns),
                       Window(int(params.get("lookback", d.window.lookback)),
                              int(params.get("horizon", d.window.horizon))))
        except (ValueError, SyntaxError, TypeError, IndexError) as exc:
            raise InputError(f"{source}: its run's data parameters cannot be read back: "
                             f"{exc}"[:300]) from None


def load(name: str, validation_split: float = 0.2, image_size: tuple[int, int] = (32, 32),
         test: bool = True, cache: str | None = None, table: TableOptions | None = None,
         window: Window | None = None) -> Dataset:
    """The fixed splits of ``name``; ``test=False`` leaves the test split out (the selection
    runs of final training never see it). ``window``: a series' (other data have none)."""
    if not 0 < validation_split < 1:
        raise InputError(f"--validation-split must be in (0, 1), got {validation_split}")
    table = table or TableOptions()
    if name == "sensor" or name.startswith("series:"):
        from trial_image.data.series import load_labelled, load_series

        if table.column_types:
            raise InputError("a series is read as numbers: --column-types does not apply")
        if table.task == "classification" and name != "sensor":
            if (window or Window()) != Window():
                raise InputError("a labelled series is classified whole (its row is its "
                                 "window): --lookback and --horizon do not apply")
            return load_labelled(name, table.target, validation_split, test)
        if table.task not in (None, "regression"):
            raise InputError("a series is forecast (a regression) from its own values, or "
                             "classified (series:PATH --task classification): --task "
                             f"{table.task} does not apply")
        return load_series(name, table.target, window or Window(), validation_split, test)
    if not is_table(name) and table != TableOptions():
        raise InputError(f"--target, --task and --column-types are for tables, not {name!r}")
    if is_table(name):
        from trial_image.data.tables import load_table

        return load_table(name, table, validation_split, test)
    if name.startswith("dir:"):
        from trial_image.data.images import load_folder

        return load_folder(name[4:], validation_split, image_size, test, cache)
    if name.startswith("tfrecord:"):
        from trial_image.data.shards import load_shards

        return load_shards(name[9:], image_size, test, cache)
    if name == "digits" or name in KERAS_DATASETS or name.startswith("npz:"):
        from trial_image.data.arrays import load_arrays

        return load_arrays(name, validation_split, test)
    raise InputError(f"unknown dataset {name!r}; use {DATASETS_HELP}")


def is_table(name: str) -> bool:
    return name in TABLES or name.startswith(("csv:", "parquet:"))
