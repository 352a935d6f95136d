"""Datasets as train/validation/test splits read through ``tf.data``: arrays in memory for the
small built-in sets, streamed files and shards (local, a mounted volume, ``gs://``, ``s3://``)
for users' data. The test split is evaluated once, after training, and never drives the search.
"""

from __future__ import annotations

from trial_image.data.arrays import KERAS_DATASETS
from trial_image.data.dataset import Dataset, Split
from trial_image.data.tables import BUNDLED as TABLES
from trial_image.data.tables import TableOptions
from trial_image.errors import InputError

DATASETS_HELP = ("images: digits (default, offline), " + ", ".join(KERAS_DATASETS)
                 + ", npz:PATH, dir:PATH, tfrecord:GLOB; tables and texts: " + ", ".join(TABLES)
                 + " (offline), csv:PATH, parquet:PATH with --target; series: sensor "
                 "(offline), series:PATH with --target, --lookback, --horizon (PATH may be "
                 "gs:// or s3://)")
CACHES_HELP = ("keep decoded images of streamed data: 'memory', or a folder for tf.data's "
               "cache files (default: none, every pass reads and decodes)")

__all__ = ["DATASETS_HELP", "TABLES", "Dataset", "Split", "TableOptions", "is_table", "load"]


def load(name: str, validation_split: float = 0.2, image_size: tuple[int, int] = (32, 32),
         test: bool = True, cache: str | None = None,
         table: TableOptions | None = None) -> Dataset:
    """The fixed splits of ``name``; ``test=False`` leaves the test split out (the selection
    runs of final training never see it)."""
    if not 0 < validation_split < 1:
        raise InputError(f"--validation-split must be in (0, 1), got {validation_split}")
    table = table or TableOptions()
    if name == "sensor" or name.startswith("series:"):
        from trial_image.data.series import load_series

        if table.task not in (None, "regression") or table.column_types:
            raise InputError("a series is forecast (a regression) from its own values: "
                             "--task and --column-types do not apply")
        return load_series(name, table.target, table.lookback, table.horizon,
                           validation_split, test)
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
