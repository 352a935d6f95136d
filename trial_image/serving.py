"""A table's (or a text's) model as an MLflow model that answers raw rows.

MLflow's Keras flavour feeds a DataFrame to the network as one numeric array, which a model with
one named input per column (text among them) cannot take. This ``pyfunc`` takes a DataFrame (or
the ``dataframe_split``/``dataframe_records`` JSON of ``mlflow models serve``) and hands each
column to its input: numbers as float32 with missing ones NaN, categories as text with missing
ones ``""``; unseen categories are the network's business (its out-of-vocabulary index).
It returns class probabilities (``(rows, classes)``, in the order of the model's ``classes``
metadata) or, for a regression, one number a row. It ships the ``trial_image`` package
(``code_paths``), which holds the network's one custom layer.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from trial_image.errors import InputError

PREDICT_BATCH = 1024


def model_inputs(frame: Any, columns: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """The network's inputs from a DataFrame of raw rows (extra columns are ignored)."""
    import pandas as pd

    from trial_image.data.tables import text_values

    frame = pd.DataFrame(frame)
    absent = [name for name, _ in columns if name not in frame.columns]
    if absent:
        raise InputError(f"the rows have no column(s) {', '.join(absent)}; the model reads "
                         + ", ".join(name for name, _ in columns))
    out = {}
    for name, kind in columns:
        if kind == "numeric":
            raw = frame[name].replace("", None)
            values = pd.to_numeric(raw, errors="coerce")
            wrong = values.isna() & raw.notna()
            if wrong.any():
                raise InputError(f"column {name!r} is numeric; row {int(wrong.idxmax())} holds "
                                 f"{str(raw[wrong].iloc[0])[:50]!r}")
            values = values.to_numpy(dtype="float32", na_value=np.nan)
        else:
            values = text_values(frame[name])
        out[name] = values[:, None]
    return out


def frame_of(features: dict[str, np.ndarray]) -> Any:
    """A batch of a table split (``(rows, 1)`` arrays by column) as raw rows."""
    import pandas as pd

    return pd.DataFrame({name: values[:, 0] for name, values in features.items()})


class TableModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        # Keras is not heard warning, once per column, that the inputs are keyed by column
        # while their layers are named c<i>_<column> (on purpose: trial_image/builder)
        import keras

        import trial_image.builder.tables  # noqa: F401 - registers the network's Impute layer

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "When providing `inputs` as a dict")
            self.model = keras.saving.load_model(context.artifacts["keras"])
        described = json.loads(Path(context.artifacts["table"]).read_text())
        self.columns = [tuple(c) for c in described["columns"]]
        self.regression = not described["classes"]

    # no type hints: MLflow would validate every request against them
    def predict(self, context, model_input, params=None):
        import tensorflow as tf

        features = model_inputs(model_input, self.columns)
        rows = len(next(iter(features.values())))
        parts = [self.model({name: tf.constant(values[start:start + PREDICT_BATCH])
                             for name, values in features.items()}, training=False).numpy()
                 for start in range(0, rows, PREDICT_BATCH)]
        out = np.concatenate(parts) if parts else np.zeros((0, self.model.output_shape[-1]))
        return out[:, 0] if self.regression else out


def load_keras(mlflow: Any, uri: str, family: Any) -> Any:
    """The Keras network stored at ``uri`` (``runs:/ID/model``, ``models:/NAME/N``): a table's
    or a text's pyfunc holds it (:class:`TableModel`), the others are MLflow's Keras flavour."""
    if family.tensor_input is None:
        return mlflow.pyfunc.load_model(uri).unwrap_python_model().model
    import mlflow.tensorflow

    return mlflow.tensorflow.load_model(uri)


def log_table_model(model: Any, columns: tuple[tuple[str, str], ...], classes: tuple[str, ...],
                    example: dict[str, np.ndarray]) -> str:
    """Log ``model`` as the active run's model ``model``; its id."""
    from importlib.metadata import version

    import mlflow.tensorflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    # Every column is typed Any, its kind (numeric, categorical, text) in the metadata: MLflow's
    # enforcement refuses int64 in a double column (the 70 of a JSON request) and an integer code
    # in a string one; model_inputs converts, and refuses what is neither missing nor a number
    inputs = Schema([ColSpec(AnyType(), name, required=False) for name, _ in columns])
    outputs = Schema([TensorSpec(np.dtype(np.float32), (-1, len(classes)) if classes else (-1,))])
    quiet = logging.getLogger("mlflow.pyfunc")  # its CloudPickle advice concerns this very class
    level = quiet.level
    with tempfile.TemporaryDirectory() as folder:
        keras_file = Path(folder, "network.keras")
        model.save(keras_file)
        table_file = Path(folder, "table.json")
        table_file.write_text(json.dumps({"columns": columns, "classes": classes}))
        quiet.setLevel(logging.ERROR)
        try:
            info = mlflow.pyfunc.log_model(
                name="model", python_model=TableModel(),
                artifacts={"keras": str(keras_file), "table": str(table_file)},
                code_paths=[str(Path(__file__).resolve().parent)],  # the trial_image package
                signature=ModelSignature(inputs=inputs, outputs=outputs),
                input_example=frame_of(example),
                metadata={"classes": list(classes), "columns": [list(c) for c in columns]},
                # explicit: inferring them would reload the model in a fresh process
                pip_requirements=[*mlflow.tensorflow.get_default_pip_requirements(),
                                  f"pandas=={version('pandas')}"])
        finally:
            quiet.setLevel(level)
    return info.model_id
