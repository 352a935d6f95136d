"""One trial's run: Katib metric lines, the MLflow run and its end state (KILLED on SIGTERM), and
training a candidate spec to a recorded model. Every front end ends here (the DARTS search too,
for the network it derives)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from trial_image import tags, termination
from trial_image.reward import Reward

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# What a selection run logs for final training's ensemble choice (pipeline/finalize/ensemble.py):
# its outputs on the validation split (truth, outputs), of this many examples at most
VALIDATION_OUTPUTS = "validation/outputs.npz"
MAX_OUTPUTS = 100_000


@dataclass(frozen=True)
class RunOptions:
    """What a trial's run takes from the trial CLI's flags (same names, same defaults)."""

    experiment_name: str | None = None
    trial_name: str | None = None  # default $KATIB_TRIAL_NAME
    namespace: str | None = None  # default the pod's service-account namespace
    algorithm: str | None = None
    role: str = "trial"  # trial | selection | final
    metrics_file: Path | None = None
    metrics_format: str = "text"
    mlflow_retry_seconds: float = 120.0
    seed: int = 0
    patience: int = 5
    time_budget: float | None = None
    evaluate_model: str | None = None  # a registered model to measure on the same test split
    reward: Reward | None = None  # MnasNet's reward, reported every epoch
    checkpoint_dir: Path | None = None  # saved every epoch; resumed or inherited from
    max_unreadable: float = 0.01  # streamed examples that may fail to read (a split's share)

    @classmethod
    def of(cls, args: argparse.Namespace) -> RunOptions:
        """The options among ``args`` (a subcommand without a flag keeps its default)."""
        options = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        if getattr(args, "reward_target", None) is not None:
            options["reward"] = Reward(args.reward_target, args.reward_cost, args.reward_alpha,
                                       args.reward_beta)
        return cls(**options)


def _namespace(args: RunOptions) -> str:
    if args.namespace:
        return args.namespace
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    return "local"


def prepare_tensorflow(seed: int) -> None:
    """Quiet, seeded and deterministic: same seed, same metrics on CPU."""
    import keras
    import tensorflow as tf

    from trial_image.training import quiet_keras

    quiet_keras()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


class TrialRun:
    """Use as a context manager around the work: a failure ends the MLflow run FAILED (KILLED on
    SIGTERM) with its reason and propagates; nothing is left RUNNING."""

    def __init__(self, args: RunOptions, data: Any, workers: Any = None,
                 strategy: Any = None) -> None:
        """``workers`` and ``strategy``: a trial of several processes
        (:mod:`trial_image.distributed`); only its chief reports and logs."""
        from trial_image.katib_metrics import MetricsReporter
        from trial_image.mlflow_connection import default_tracking_uri
        from trial_image.tracking import Tracker

        self.args = args
        self.data = data
        self.chief = workers is None or workers.chief
        self.workers = 1 if workers is None else workers.count
        self.strategy = strategy
        self.started = time.perf_counter()
        self.experiment = args.experiment_name or "nasflow"
        self.trial = (args.trial_name or os.environ.get("KATIB_TRIAL_NAME")
                      or f"trial-{int(time.time())}")
        self.tracker = None  # the other workers of a multi-worker trial never talk to MLflow
        if self.chief:
            self.tracker = Tracker(default_tracking_uri(), self.experiment,
                                   args.mlflow_retry_seconds)
        self.reporter = MetricsReporter(args.metrics_file, args.metrics_format)

    def checkpoints(self, spec: Any) -> Any:
        """The ``--checkpoint-dir`` plan for ``spec`` (None without one), read before anything
        starts: a damaged checkpoint is an input error."""
        from trial_image import checkpoint

        if self.args.checkpoint_dir is None:
            return None
        return checkpoint.Plan.of(self.args.checkpoint_dir, self.trial,
                                  checkpoint.fingerprint(spec, self.args.seed, self.data))

    def start(self, run_tags: dict[str, str], params: dict[str, Any],
              artifacts: dict[str, Any], resume_run: str = "") -> None:
        from trial_image.data.lineage import digest_tags

        # before the run exists: a SIGTERM while it starts or logs its inputs (seconds, when
        # Katib deletes the pod early) ends it KILLED instead of leaving it RUNNING
        termination.raise_on_sigterm()
        base = {tags.EXPERIMENT: self.experiment, tags.TRIAL: self.trial,
                tags.NAMESPACE: _namespace(self.args), tags.DATASET: self.data.name,
                tags.WORKERS: str(self.workers), **digest_tags(self.data)}
        if self.args.algorithm:
            base[tags.ALGORITHM] = self.args.algorithm
        self.tracker.start(self.trial, os.environ.get("MLFLOW_PARENT_RUN_ID") or None,
                           {**base, **run_tags}, params, artifacts, resume_run)
        self.tracker.log_inputs(self.data)

    def __enter__(self) -> TrialRun:
        return self

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: Any) -> None:
        if exc is None or not self.chief:
            return
        if isinstance(exc, termination.Terminated):
            self.tracker.end("KILLED", str(exc))
        else:
            self.tracker.end("FAILED", str(exc) or type(exc).__name__)

    def report(self, epoch: int, metrics: dict[str, float], replayed: bool = False) -> None:
        """One epoch: Katib's metric lines and the MLflow curves. A resumed trial replays its
        checkpoint's epochs to Katib (a restarted pod's collector sees the whole curve) and to
        MLflow where the run lacks them."""
        self.reporter.report(metrics)
        self.tracker.log_epoch(epoch, metrics, replayed)

    def train_candidate(self, spec: Any, model: Any = None,
                        extra_metrics: dict[str, float] | None = None, plan: Any = None
                        ) -> None:
        """Train and evaluate ``spec`` (its ``model`` if built already; from the checkpoint
        ``plan`` if any); log final metrics and the model, end the run FINISHED."""
        from trial_image.builder import build_model
        from trial_image.report import architecture_figure
        from trial_image.tasks import TASKS
        from trial_image.training import compile_model, train

        args, data, task = self.args, self.data, TASKS[spec.task]
        model = model or build_model(spec, data.train)
        steps = math.ceil(data.train.count / spec.training.batch_size)
        fitted = model if self.strategy is None else self._distributed(spec, model, steps)
        if not self.chief:
            train(fitted, data, spec.training, seed=args.seed, patience=args.patience,
                  time_budget=None, on_epoch=lambda *_: None, task=task,
                  strategy=self.strategy, max_unreadable=args.max_unreadable)
            return
        # the costs first: fixed by the architecture, and the reward needs them every epoch
        costs = self._costs(model)
        report = self.report
        if args.reward is not None and data.has_validation:  # final training has none
            reward, cost = args.reward, costs[args.reward.metric]

            def report(epoch: int, metrics: dict[str, float], replayed: bool = False) -> None:
                rewarded = reward(metrics["Validation-Accuracy"], cost)
                self.report(epoch, {**metrics, "Reward": rewarded}, replayed)

        compile_model(model, spec.training, steps, task)
        result = train(fitted, data, spec.training, seed=args.seed, patience=args.patience,
                       time_budget=args.time_budget, on_epoch=report, task=task, plan=plan,
                       run_id=self.tracker.run_id, strategy=self.strategy,
                       max_unreadable=args.max_unreadable)
        if fitted is not model:  # the chief evaluates and stores a plain copy, once
            model.optimizer.build(model.trainable_variables)
            model.set_weights(fitted.get_weights())
        summary = {**(extra_metrics or {}), "Epochs-Run": float(len(result.history)),
                   "Train-Samples-Per-Second": result.samples_per_second}
        if data.has_validation:
            summary[task.best_validation_metric] = task.best(
                [h[task.validation_metric] for h in result.history])
        final = self._store(model, task, costs, summary, {}, lambda: architecture_figure(
            spec, f"{spec.source} candidate {spec.candidate_id}"))
        tested = (f"test {task.measure} {final[task.test_metric]:.4f}"
                  if task.test_metric in final else "the test split was not loaded")
        print(f"trial {self.trial}: {result.stop_reason} after {len(result.history)} epoch(s); "
              f"{tested}", file=sys.stderr)

    def record_ensemble(self, model: Any, task: Any, members: list[dict[str, Any]]) -> None:
        """An ensemble of final models: nothing to train; measured on the test split and
        stored as a final model is, its members in ``ensemble.json``."""
        final = self._store(model, task, self._costs(model), {}, {
            "ensemble.json": json.dumps(members, indent=2)}, None)
        print(f"trial {self.trial}: an ensemble of {len(members)} final models; test "
              f"{task.measure} {final[task.test_metric]:.4f}", file=sys.stderr)

    def _costs(self, model: Any) -> dict[str, float]:
        from trial_image.builder import multiply_adds
        from trial_image.training import inference_latency_ms

        return {"Parameter-Count": float(model.count_params()),
                "Model-Size-Bytes": float(sum(w.numpy().nbytes for w in model.weights)),
                "Multiply-Adds": float(multiply_adds(model)),
                "Inference-Latency-Ms": inference_latency_ms(model, self.data.train.take(1)[0])}

    def _store(self, model: Any, task: Any, costs: dict[str, float], summary: dict[str, float],
               texts: dict[str, str], architecture: Any) -> dict[str, float]:
        """Evaluate ``model`` on the test split (if loaded), report the final metrics to Katib,
        log them and the model (a selection run: its validation outputs instead, for the
        ensemble's choice) and end the run FINISHED; the final metrics."""
        from trial_image.training import outputs, unreadable

        args, data = self.args, self.data
        final, summary = dict(costs), dict(summary)
        if data.test is not None:
            evaluation = self._evaluate(task, model, texts, architecture)
            final[task.test_metric] = evaluation.pop(task.test_metric)
            summary.update(evaluation)
        lines, skipped = unreadable(data, args.max_unreadable)
        for line in lines:
            print(f"trial {self.trial}: {line}", file=sys.stderr)
        if skipped:
            summary["Unreadable-Examples"] = float(skipped)
        self.reporter.report(final)
        selection = args.role == "selection"
        if selection and data.has_validation:
            truth, out = outputs(model.predict_on_batch, data.validation, MAX_OUTPUTS)
            self.tracker.log_arrays(VALIDATION_OUTPUTS, truth=truth, outputs=out)
        termination.check()  # a dropped SIGTERM must not end the run FINISHED
        # a selection run of final training only ranks its candidate: it stores no model
        self.tracker.finish({**final, **summary,
                             "Trial-Seconds": time.perf_counter() - self.started},
                            None if selection else model, data.train.take(5)[0], data)
        return final

    def _distributed(self, spec: Any, model: Any, steps: int) -> Any:
        """``model``'s twin under the multi-worker strategy, from the same initial weights (so
        the seed means what it means for one worker), compiled and ready to fit."""
        from trial_image import distributed
        from trial_image.builder import build_model
        from trial_image.tasks import TASKS
        from trial_image.training import compile_model

        with self.strategy.scope():
            fitted = build_model(spec, self.data.train)
            fitted.set_weights(model.get_weights())
            compile_model(fitted, spec.training, steps, TASKS[spec.task])
        distributed.prepare_model(fitted, self.data.train.take(spec.training.batch_size))
        return fitted

    def _evaluate(self, task: Any, model: Any, texts: dict[str, str], architecture: Any
                  ) -> dict[str, float]:
        """The test split's figures (one pass over it): accuracy and macro precision/recall/F1,
        or RMSE, MAE and R²; with ``--evaluate-model`` the registered model on the same split;
        for a final run the per-class figures and confusion matrix (or the residuals and the
        error by decile), the architecture diagram (``architecture``: it draws it) and
        ``texts`` as artifacts."""
        from trial_image import report
        from trial_image.training import predictions

        data, texts, figures = self.data, dict(texts), {}
        truth, predicted = predictions(model.predict_on_batch, data.test, task)
        if task.name == "classification":
            metrics, table = report.classification(truth, predicted, data.num_classes)
            metrics["Test-Accuracy"] = float((truth == predicted).mean())
            texts["evaluation/per_class.json"] = json.dumps(table, indent=2)
            figures["evaluation/confusion_matrix.png"] = lambda: report.confusion_figure(
                table["confusion_matrix"], f"{self.trial}: test split")
        else:
            metrics, table = report.regression(truth, predicted)
            texts["evaluation/error_by_decile.json"] = json.dumps(table, indent=2)
            figures["evaluation/residuals.png"] = lambda: report.residual_figure(
                truth, predicted, f"{self.trial}: test split")
        if self.args.evaluate_model:
            measured, compared = self.tracker.registered_measure(
                self.args.evaluate_model, data.test, task)
            self.tracker.set_tags({tags.COMPARED_WITH: compared})
            if measured is not None:
                metrics[task.champion_metric] = measured
        if self.args.role == "final":
            if architecture is not None:
                figures["architecture.png"] = architecture
            self.tracker.log_artifacts(texts, {path: draw() for path, draw in figures.items()})
        return metrics

