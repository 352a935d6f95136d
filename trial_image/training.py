"""Keras ``fit`` with what a trial needs: early stopping, a time budget, NaN detection."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from trial_image.data import Dataset, Split
from trial_image.errors import TrainingFailed
from trial_image.spec import Training
from trial_image.tasks import CLASSIFICATION, Task


@dataclass(frozen=True)
class TrainResult:
    history: list[dict[str, float]]  # per epoch, Katib metric names
    stop_reason: str  # completed | early_stopping | time_budget
    fit_seconds: float
    samples_per_second: float


def quiet_keras() -> None:
    """Keras progress bars would flood Katib's metrics log; route them to logging instead."""
    keras.config.disable_interactive_logging()


def compile_model(model: keras.Model, training: Training, steps_per_epoch: int = 1,
                  task: Task = CLASSIFICATION) -> None:
    """The optimiser of ``training`` and the loss and metrics of ``task``; with the cosine
    schedule the learning rate decays from ``learning_rate`` to 0 over ``epochs ×
    steps_per_epoch`` steps. Keras applies a weight decay decoupled from the gradient (Adam
    with one is AdamW)."""
    lr: float | keras.optimizers.schedules.LearningRateSchedule = training.learning_rate
    if training.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(training.learning_rate,
                                                    training.epochs * max(steps_per_epoch, 1))
    decay = {"weight_decay": training.weight_decay} if training.weight_decay else {}
    optimizer = {
        "adam": lambda: keras.optimizers.Adam(lr, **decay),
        "sgd": lambda: keras.optimizers.SGD(lr, momentum=training.momentum, **decay),
        "rmsprop": lambda: keras.optimizers.RMSprop(lr, momentum=training.momentum, **decay),
    }[training.optimizer]()
    model.compile(optimizer=optimizer, **task.compile_arguments())


class _EpochReport(keras.callbacks.Callback):
    """Hands each epoch's metrics on, and stops at the first NaN/inf loss."""

    def __init__(self, on_epoch: Callable[[int, dict[str, float]], None], task: Task) -> None:
        super().__init__()
        self.on_epoch = on_epoch
        self.names = task.keras_to_katib()
        self.history: list[dict[str, float]] = []
        self.nan_epoch: int | None = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        metrics = {self.names[k]: float(v) for k, v in (logs or {}).items() if k in self.names}
        if not all(math.isfinite(v) for v in metrics.values()):
            self.nan_epoch = epoch + 1
            self.model.stop_training = True
            return
        self.history.append(metrics)
        self.on_epoch(epoch + 1, metrics)


class _TimeBudget(keras.callbacks.Callback):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.expired = False

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.deadline = time.monotonic() + self.seconds

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        if time.monotonic() > self.deadline:
            self.expired = True
            self.model.stop_training = True


def train(
    model: keras.Model,
    data: Dataset,
    training: Training,
    *,
    seed: int,
    patience: int,
    time_budget: float | None,
    on_epoch: Callable[[int, dict[str, float]], None],
    task: Task = CLASSIFICATION,
) -> TrainResult:
    """Without a validation split (final training on training + validation) every epoch runs:
    there is nothing to stop early on. Augmentation (shifts) is for images; other families
    train on their rows as they are."""
    report = _EpochReport(on_epoch, task)
    callbacks: list[keras.callbacks.Callback] = [report]
    if data.has_validation:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=f"val_{task.keras_metrics[0]}", mode="max" if task.maximize else "min",
            patience=patience, restore_best_weights=True))
    budget = _TimeBudget(time_budget) if time_budget else None
    if budget:
        callbacks.append(budget)
    start = time.perf_counter()
    model.fit(
        data.train.batches(training.batch_size, shuffle_seed=seed,
                           augment=training.augment if data.family == "image" else "none"),
        validation_data=data.validation.batches(max(training.batch_size, 256))
        if data.has_validation else None,
        epochs=training.epochs,
        shuffle=False,  # the tf.data pipeline shuffles (seeded); Keras would only warn
        callbacks=callbacks,
        verbose=0,
    )
    fit_seconds = time.perf_counter() - start
    if report.nan_epoch is not None:
        raise TrainingFailed(
            f"loss became NaN/inf in epoch {report.nan_epoch} (learning rate "
            f"{training.learning_rate} with {training.optimizer} diverged)"
        )
    if budget and budget.expired:
        reason = "time_budget"
    elif len(report.history) < training.epochs:
        reason = "early_stopping"
    else:
        reason = "completed"
    return TrainResult(
        history=report.history,
        stop_reason=reason,
        fit_seconds=fit_seconds,
        samples_per_second=len(report.history) * data.train.count / fit_seconds,
    )


def predict_classes(predict: Callable[[Any], Any], split: Split
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(true, predicted) classes over ``split``, one batch in memory at a time: ``predict``
    maps a batch of raw examples to class scores (a Keras model, a pyfunc, a LiteRT file)."""
    return predictions(predict, split, CLASSIFICATION)


def predictions(predict: Callable[[Any], Any], split: Split, task: Task
                ) -> tuple[np.ndarray, np.ndarray]:
    """(truth, prediction) over ``split``: classes (the arg-max of the scores) or numbers."""
    truth, predicted = [], []
    for x, y in split.arrays():
        truth.append(np.ravel(y))
        out = np.asarray(predict(x))
        predicted.append(out.argmax(axis=1) if task.name == "classification"
                         else out.reshape(len(out)))
    return np.concatenate(truth), np.concatenate(predicted)


def inference_latency_ms(model: keras.Model, sample: Any, repeats: int = 50) -> float:
    """Median wall time of one batch-1 forward pass on a compiled graph, in milliseconds
    (``sample``: images, or a table's columns by name)."""
    import tensorflow as tf

    forward = tf.function(lambda x: model(x, training=False))
    x = keras.tree.map_structure(lambda a: tf.constant(a[:1]), sample)
    for _ in range(5):
        forward(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(x).numpy()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
