"""Keras ``fit`` with what a trial needs: early stopping, a time budget, NaN detection."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from trial_image import checkpoint, termination
from trial_image.data import Dataset, Split
from trial_image.data.unreadable import check
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

    def __init__(self, on_epoch: Callable[[int, dict[str, float], bool], None],
                 task: Task) -> None:
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
        self.on_epoch(epoch + 1, metrics, False)


class _EarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping that can start from a checkpoint's state."""

    def __init__(self, restored: dict[str, Any], best_weights: list[Any] | None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restored, self.restored_weights = restored, best_weights

    def on_train_begin(self, logs: dict | None = None) -> None:
        super().on_train_begin(logs)
        if self.restored:
            self.wait, self.best = self.restored["wait"], self.restored["best"]
            self.best_epoch, self.best_weights = self.restored["best_epoch"], self.restored_weights

    def state(self) -> dict[str, Any]:
        best = None if self.best is None else float(self.best)
        return {"wait": self.wait, "best": best, "best_epoch": self.best_epoch,
                "stopped": bool(self.model.stop_training and self.stopped_epoch)}


class _Checkpoints(keras.callbacks.Callback):
    """Saves a checkpoint after every epoch (after the other callbacks have seen it) and a
    finished one at the end."""

    def __init__(self, plan: checkpoint.Plan, state: checkpoint.Checkpoint,
                 report: _EpochReport, stopping: _EarlyStopping | None) -> None:
        super().__init__()
        self.plan, self.state, self.report, self.stopping = plan, state, report, stopping

    def _save(self, epoch: int, finished: bool) -> None:
        self.state.epoch, self.state.finished = epoch, finished
        self.state.history = self.report.history
        if self.stopping is not None:
            self.state.early_stopping = self.stopping.state()
        best = self.stopping.best_weights if self.stopping is not None else None
        checkpoint.write(self.plan.directory, self.model, self.state, best)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.report.nan_epoch is None:
            self._save(epoch + 1, finished=False)
            checkpoint.note(f"epoch {epoch + 1} saved")

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.report.nan_epoch is None:
            self._save(self.state.epoch, finished=True)


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


class _Termination(keras.callbacks.Callback):
    """A SIGTERM whose exception a finaliser dropped still stops the trial within a batch."""

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        termination.check()

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        termination.check()


class _Unreadable(keras.callbacks.Callback):
    """After each epoch: refuse the data (InputError, exit 2) once a split read in full holds
    more than ``most`` unreadable examples (:mod:`trial_image.data.unreadable`)."""

    def __init__(self, data: Dataset, most: float) -> None:
        super().__init__()
        self.data, self.most = data, most

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        unreadable(self.data, self.most)


def unreadable(data: Dataset, most: float) -> tuple[list[str], int]:
    """One line per split with unreadable examples, and how many in all; InputError above
    ``most``."""
    states = [state for state in (s.unreadable() for s in data.splits) if state is not None]
    return check(states, most), sum(state.examples for state in states)


def train(
    model: keras.Model,
    data: Dataset,
    training: Training,
    *,
    seed: int,
    patience: int,
    time_budget: float | None,
    on_epoch: Callable[[int, dict[str, float], bool], None],
    task: Task = CLASSIFICATION,
    plan: checkpoint.Plan | None = None,
    run_id: str = "",
    strategy: Any = None,
    max_unreadable: float = 0.01,
) -> TrainResult:
    """Without a validation split (final training on training + validation) every epoch runs:
    there is nothing to stop early on. Augmentation (shifts) is for images; other families
    train on their rows as they are. With a checkpoint ``plan`` every epoch is saved, and a
    resumed trial replays its finished epochs' metric lines (``on_epoch``'s ``replayed``) and
    trains the rest. With a multi-worker ``strategy`` (``model`` built under it) every worker
    runs this with the same arguments."""
    own = plan is not None and plan.own
    previous = plan.previous if plan is not None else None
    best_weights = (checkpoint.restore(plan.directory, model, previous, own)
                    if previous is not None else None)
    report = _EpochReport(on_epoch, task)
    if own:
        report.history = list(previous.history)
        for epoch, metrics in enumerate(previous.history, previous.epoch - len(previous.history)):
            on_epoch(epoch + 1, metrics, True)
    callbacks: list[keras.callbacks.Callback] = [report, _Unreadable(data, max_unreadable),
                                                 _Termination()]
    stopping = None
    if data.has_validation:
        stopping = _EarlyStopping(
            previous.early_stopping if own else {}, best_weights,
            monitor=f"val_{task.keras_metrics[0]}", mode="max" if task.maximize else "min",
            patience=patience, restore_best_weights=True)
        callbacks.append(stopping)
    budget = _TimeBudget(time_budget) if time_budget else None
    if budget:
        callbacks.append(budget)
    first, last = 0, training.epochs
    if plan is not None:
        first, last = plan.first_epoch, plan.target(training.epochs)
        callbacks.append(_Checkpoints(plan, checkpoint.Checkpoint(
            plan.trial, plan.fingerprint, first, last, lineage=plan.lineage, run_id=run_id),
            report, stopping))
    # One iterator over the repeated pipeline for the whole fit (Keras keeps it when given
    # steps_per_epoch): each epoch's order then depends only on how many came before, so a
    # resumed trial skips its finished epochs' batches (read, not trained on) and sees the
    # order the uninterrupted run saw.
    steps = max(1, math.ceil(data.train.count / training.batch_size))
    batches = data.train.batches(training.batch_size, shuffle_seed=seed,
                                 augment=data.family.augment(training.augment)
                                 ).repeat()
    if own:
        batches = batches.skip(len(previous.history) * steps)
    validation = (data.validation.batches(max(training.batch_size, 256))
                  if data.has_validation else None)
    if strategy is not None:  # several workers: each takes its share of every global batch
        from trial_image.distributed import shard_by_data

        batches = shard_by_data(batches)
        validation = None if validation is None else shard_by_data(validation)
    start = time.perf_counter()
    with warnings.catch_warnings():
        # A streamed split's size is known once read (unreadable examples are dropped), so
        # Keras learns the validation split's end by reaching it, and warns; the training
        # stream repeats and cannot run out.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        model.fit(
            batches,
            steps_per_epoch=steps,
            validation_data=validation,
            initial_epoch=first,
            epochs=last,
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
    elif stopping is not None and (stopping.stopped_epoch or stopping.restored.get("stopped")):
        reason = "early_stopping"
    else:
        reason = "completed"
    return TrainResult(
        history=report.history,
        stop_reason=reason,
        fit_seconds=fit_seconds,
        samples_per_second=(len(report.history) - (len(previous.history) if own else 0))
        * data.train.count / max(fit_seconds, 1e-9),
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


def outputs(predict: Callable[[Any], Any], split: Split, limit: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """(truth, output) of ``split``'s first ``limit`` examples: class probabilities, or
    numbers; float32, so that memory is bounded by ``limit``, not by the split."""
    truth, out, seen = [], [], 0
    for x, y in split.arrays():
        if seen >= limit:
            break
        truth.append(np.ravel(y)[:limit - seen])
        out.append(np.asarray(predict(x), dtype="float32")[:limit - seen])
        seen += len(truth[-1])
    return np.concatenate(truth), np.concatenate(out)


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
