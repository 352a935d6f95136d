"""A ``.tflite`` file as an MLflow model: MLflow has no LiteRT flavour, so a ``pyfunc`` wraps it.

The model takes the same raw images as the float model (a tensor ``(-1, H, W, C)`` float32) and
returns class probabilities; it ships this package (``code_paths``) and needs only the LiteRT
interpreter and NumPy to serve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np

from trial_image.compress.litert import LiteRT


class LiteRTModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = LiteRT(Path(context.artifacts["tflite"]).read_bytes())

    # no type hints: MLflow would validate every request against them
    def predict(self, context, model_input, params=None):
        return self.model.predict(np.asarray(model_input, dtype=np.float32))


def log_model(tflite: Path, example: np.ndarray, classes: int) -> None:
    """Log ``tflite`` as the active run's model ``model``, with its signature and example."""
    from importlib.metadata import version

    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    signature = ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, classes))]))
    mlflow.pyfunc.log_model(
        name="model", python_model=LiteRTModel(), artifacts={"tflite": str(tflite)},
        code_paths=[str(Path(__file__).resolve().parents[1])],  # the trial_image package
        signature=signature, input_example=example.astype(np.float32),
        # explicit: inferring them would reload the model in a fresh process
        pip_requirements=[f"ai-edge-litert=={version('ai-edge-litert')}",
                          f"numpy=={np.__version__}", f"mlflow-skinny=={mlflow.__version__}"])
