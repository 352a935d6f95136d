"""A ``.tflite`` file as an MLflow model: MLflow has no LiteRT flavour, so a ``pyfunc`` wraps it.

The model takes the same raw input as the float model (a tensor ``(-1, H, W, C)`` float32 of
images or ``(-1, lookback)`` of windows; a table's raw rows) and returns class probabilities or
forecasts; it ships this package (``code_paths``) and needs only the LiteRT
interpreter and NumPy to serve.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from trial_image.compress.litert import LiteRT


class LiteRTModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = LiteRT(Path(context.artifacts["tflite"]).read_bytes())
        table = context.artifacts.get("table")
        self.columns = [tuple(c) for c in json.loads(Path(table).read_text())["columns"]] \
            if table else None

    # no type hints: MLflow would validate every request against them
    def predict(self, context, model_input, params=None):
        if self.columns is not None:  # a table's raw rows, as its float model takes them
            from trial_image.serving import model_inputs

            return self.model.predict(model_inputs(model_input, self.columns))
        return self.model.predict(np.asarray(model_input, dtype=np.float32))


def log_model(tflite: Path, example: Any, classes: int,
              columns: tuple[tuple[str, str], ...] = ()) -> None:
    """Log ``tflite`` as the active run's model ``model``, with its signature and example
    (a table's: its columns, as :func:`trial_image.serving.log_table_model` has them)."""
    from importlib.metadata import version

    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec
    from mlflow.types.schema import AnyType

    from trial_image.serving import frame_of

    artifacts = {"tflite": str(tflite)}
    if columns:
        table = tflite.with_name("table.json")
        table.write_text(json.dumps({"columns": columns}))
        artifacts["table"] = str(table)
        inputs = Schema([ColSpec(AnyType(), name, required=False) for name, _ in columns])
        example = frame_of(example)
    else:
        inputs = Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]))])
        example = example.astype(np.float32)
    signature = ModelSignature(
        inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]))
    mlflow.pyfunc.log_model(
        name="model", python_model=LiteRTModel(), artifacts=artifacts,
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the trial_image package
        signature=signature, input_example=example,
        # explicit: inferring them would reload the model in a fresh process
        pip_requirements=[f"ai-edge-litert=={version('ai-edge-litert')}",
                          f"numpy=={np.__version__}", f"mlflow-skinny=={mlflow.__version__}",
                          *([f"pandas=={version('pandas')}"] if columns else [])])
