"""What a task means for training, reporting and promotion: its loss and Keras metrics, the
Katib metric names a trial reports, and the one measure (with its direction) that early stopping,
final training, gates, champion/challenger and compression compare on.

Classification is measured by accuracy (higher is better), regression by RMSE (lower is
better); a trial also reports MAE and R² for regression, which a manifest may name as its
objective like any other metric.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Task:
    name: str
    measure: str  # the Katib metric suffix: Validation-<measure>, Test-<measure>
    maximize: bool
    keras_metrics: tuple[str, ...]  # Keras' metric names, as its logs spell them
    katib_names: tuple[str, ...]  # the matching Katib suffixes

    @property
    def validation_metric(self) -> str:
        return f"Validation-{self.measure}"

    @property
    def test_metric(self) -> str:
        return f"Test-{self.measure}"

    @property
    def best_validation_metric(self) -> str:
        return f"Best-Validation-{self.measure}"

    @property
    def champion_metric(self) -> str:
        """The registered champion's measure on the challenger's test split."""
        return f"Champion-Test-{self.measure}"

    @property
    def loss_metric(self) -> str:
        """How much worse a compressed variant is than its source: accuracy points lost, or
        the RMSE's increase in percent (:meth:`worse_by`)."""
        return "Accuracy-Drop" if self.maximize else "RMSE-Increase"

    def worse_by(self, source: float, variant: float) -> float:
        if self.maximize:
            return (source - variant) * 100  # points
        return (variant / source - 1) * 100 if source else 0.0  # percent

    def describe_loss(self, loss: float) -> str:
        return f"accuracy drop {loss:.2f} points" if self.maximize else \
            f"RMSE increase {loss:.2f} %"

    def best(self, values: list[float]) -> float:
        return max(values) if self.maximize else min(values)

    def judge(self, truth: Any, outputs: Any) -> tuple[float, float]:
        """(loss, measure) of a model's ``outputs`` (NumPy: class probabilities, or numbers)
        against ``truth``: cross-entropy and accuracy, or mean squared error and RMSE."""
        import numpy as np

        if self.name == "classification":
            chosen = outputs[np.arange(len(truth)), truth.astype(int)]
            return (float(-np.mean(np.log(np.clip(chosen, 1e-7, 1.0)))),
                    float(np.mean(outputs.argmax(axis=1) == truth)))
        error = float(np.mean((outputs.reshape(len(truth)) - truth) ** 2))
        return error, error ** 0.5

    def keras_to_katib(self) -> dict[str, str]:
        names = {"loss": "Training-Loss", "val_loss": "Validation-Loss"}
        for keras_name, katib in zip(self.keras_metrics, self.katib_names, strict=True):
            names[keras_name] = f"Training-{katib}"
            names[f"val_{keras_name}"] = f"Validation-{katib}"
        return names

    def compile_arguments(self) -> dict[str, Any]:
        """``loss`` and ``metrics`` for ``Model.compile``."""
        import keras

        if self.name == "classification":
            return {"loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
        return {"loss": "mean_squared_error",
                "metrics": [keras.metrics.RootMeanSquaredError(name="rmse"),
                            keras.metrics.MeanAbsoluteError(name="mae"),
                            keras.metrics.R2Score(name="r2")]}


CLASSIFICATION = Task("classification", "Accuracy", True, ("accuracy",), ("Accuracy",))
REGRESSION = Task("regression", "RMSE", False, ("rmse", "mae", "r2"), ("RMSE", "MAE", "R2"))
TASKS = {task.name: task for task in (CLASSIFICATION, REGRESSION)}


def task_of(name: str | None) -> Task:
    """The task a run's ``nasflow.task`` tag names; runs logged before tasks existed were
    classifications."""
    return TASKS.get(name or "classification", CLASSIFICATION)
