"""Which data a run read, in MLflow's dataset tracking: one input per split (the UI's Datasets
column), each with its source, context (the split), number of examples and digest.

Digests are cheap on large data: over the file listing with sizes and modification times (or
ETags), over the shard files' likewise, over the bytes for arrays. The run also carries the
digest of everything it read and of its test split as tags, which registration copies to the
model version, so promotion can say when champion and challenger were tested on different data.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

from trial_image import tags
from trial_image.data.dataset import Dataset, Split


def _source(name: str) -> Any:
    """Where the data is: the path or bucket URI for ``dir:``/``tfrecord:``/``npz:`` (MLflow
    knows local, ``s3://`` and ``gs://`` sources), else the loader by name."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    path = name.partition(":")[2]
    if path:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "can be interpreted in multiple ways"
            try:
                return resolve_dataset_source(path)
            except Exception:  # noqa: BLE001 - a scheme MLflow has no source type for
                pass
    return CodeDatasetSource({"nasflow.dataset": name})


def mlflow_dataset(data: Dataset, split: Split) -> Any:
    import numpy as np
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.types import Schema, TensorSpec

    class SplitDataset(MetaDataset):
        """MetaDataset with a profile: MLflow shows it beside the digest."""

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps({"num_examples": split.count})}

    if data.columns:
        from mlflow.types import ColSpec

        schema = Schema([ColSpec("double" if kind == "numeric" else "string", name)
                         for name, kind in data.columns]
                        + [ColSpec("integer" if data.task == "classification" else "float",
                                   "target")])
    else:  # a series' window and its next value, or an image and its label
        target = (TensorSpec(np.dtype("float32"), (-1,), "target")
                  if data.task == "regression" else TensorSpec(np.dtype("int32"), (-1,), "label"))
        schema = Schema([TensorSpec(np.dtype("float32"), (-1, *data.input_shape),
                                    data.family.tensor_input), target])
    short = data.name.rstrip("/").rsplit("/", 1)[-1].split(":")[-1] or data.name
    return SplitDataset(_source(data.name), name=f"{short}-{split.name}", digest=split.digest,
                        schema=schema)


def log_inputs(mlflow: Any, data: Dataset) -> None:
    """One request: every split the run reads, as inputs of the active run."""
    splits = data.splits
    mlflow.log_inputs(datasets=[mlflow_dataset(data, s) for s in splits],
                      contexts=[s.name for s in splits], tags_list=[None] * len(splits))


def digest_tags(data: Dataset) -> dict[str, str]:
    everything = hashlib.sha256("".join(s.digest for s in data.splits).encode()).hexdigest()
    found = {tags.DATA_DIGEST: everything[:20]}
    if data.test is not None:
        found[tags.TEST_DIGEST] = data.test.digest
    return found
