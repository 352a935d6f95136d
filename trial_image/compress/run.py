"""``python -m trial_image compress``: every variant of a registered model, measured and logged.

For ``--model-uri models:/NAME@ALIAS`` (or ``/VERSION``) of an image classifier, a table's model or
a series forecaster it loads the Keras model and its data (the dataset and split of the run that
trained it), then makes each ``--variants`` entry (a text's tokenizer has no LiteRT operations):

* ``float32``, ``float16``, ``int8-dynamic``, ``int8-full``: LiteRT post-training quantization
  (full-integer int8 calibrated on 200 training images, one weight scale per kernel unless that
  goes over ``--max-accuracy-drop``, then one per channel; not for a table, whose input is
  columns, not one tensor);
* ``pruned-<P>``: magnitude pruning to P % sparsity, fine-tuned on the images the model was
  trained on, LiteRT float32 (its saving shows in the gzip-compressed size every variant reports);
* ``distilled``: the candidate of ``--student-run`` (a smaller trial of the same search) trained
  from scratch on the teacher's softened outputs and the labels, LiteRT float32 (classifiers).

Each is one MLflow run nested under the source model's run (tags ``nasflow.role=variant``,
``nasflow.variant``, ``nasflow.source_model``): the task's measure (Test-Accuracy, Test-RMSE)
by running the ``.tflite`` file in the LiteRT interpreter, how much worse than the source model
(accuracy points lost, or the RMSE's increase in percent), file size (and gzip-compressed),
batch-1
latency (median of 100 runs, one interpreter thread), parameters, and a loadable ``pyfunc``
model. The source run gets ``compression/comparison.json`` and ``compression/accuracy_vs_size.png``
(``rmse_vs_size.png``).
Registering the variants is the pipeline's part (``nasflow compress``), as promotion is.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from trial_image import tags
from trial_image.compress import litert
from trial_image.errors import InputError, TrackingError
from trial_image.families import family_of
from trial_image.tasks import task_of

DEFAULT_VARIANTS = ("float32", "float16", "int8-dynamic", "int8-full", "pruned-50", "pruned-80",
                    "distilled")
CALIBRATION_IMAGES = 200


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m trial_image compress", allow_abbrev=False,
        description="Compress a registered model into LiteRT, pruned and distilled variants, "
        "each measured with itself and logged as an MLflow run under the model's run.")
    p.add_argument("--model-uri", required=True, help="models:/NAME@ALIAS or models:/NAME/N")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                   help=f"comma-separated (default {','.join(DEFAULT_VARIANTS)})")
    p.add_argument("--student-run", help="MLflow run of the distillation student's trial "
                   "(its candidate_spec.json); required for 'distilled'")
    p.add_argument("--max-accuracy-drop", type=float, default=0.5, metavar="POINTS",
                   help="int8-full takes one weight scale per convolution kernel when that "
                   "stays within this many points of the source model (a regression: percent "
                   "of RMSE), else one per channel (default 0.5)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="distillation (default 1: a teacher trained with augmentation and a "
                   "cosine schedule is not over-confident; at 4 its targets on digits are "
                   "nearly flat)")
    p.add_argument("--alpha", type=float, default=0.5,
                   help="weight of the labels against the teacher (default 0.5)")
    p.add_argument("--distill-epochs", type=int, default=40)
    p.add_argument("--prune-epochs", type=int, default=10, help="fine-tuning while pruning")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mlflow-retry-seconds", type=float, default=120.0)
    return p


def variant_names(text: str) -> list[str]:
    """The comma-separated variants of ``text``; InputError naming an unknown one."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    for v in variants:
        if v not in litert.QUANTIZATIONS and v != "distilled" and not re.fullmatch(
                r"pruned-([1-9]|[1-9]\d)", v):
            raise InputError(f"--variants: unknown variant {v[:60]!r}; known: "
                             f"{', '.join(litert.QUANTIZATIONS)}, pruned-<1..99>, distilled")
    if not variants:
        raise InputError("--variants: name at least one variant")
    return variants


def main(argv: list[str]) -> int:
    from trial_image.trial_run import prepare_tensorflow

    args = build_parser().parse_args(argv)
    variants = variant_names(args.variants)
    if "distilled" in variants and not args.student_run:
        raise InputError("--variants distilled needs --student-run")
    prepare_tensorflow(args.seed)  # quiet, seeded, deterministic: a rerun measures the same
    source = Source(args.model_uri, args.mlflow_retry_seconds)
    rows = [source.reference_row()]
    for variant in variants:
        content, extra = make(variant, source, args)
        rows.append(source.log_variant(variant, content, extra))
        measure = source.task.test_metric
        print(f"{variant}: {measure.replace('Test-', 'test ').replace('Accuracy', 'accuracy')} "
              f"{rows[-1][measure]:.4f}, "
              f"{rows[-1]['File-Size-Bytes']:.0f} bytes, {rows[-1]['Inference-Latency-Ms']:.3f} ms",
              file=sys.stderr)
    source.log_comparison(rows)
    return 0


def make(variant: str, source: Source, args: argparse.Namespace) -> tuple[bytes, dict]:
    """The variant's ``.tflite`` bytes and the measures that only it has."""
    import keras

    data = source.data
    if variant == "int8-full":
        if data.columns:
            raise InputError("--variants int8-full: its input is one int8 tensor; a table's "
                             "model reads columns, text among them")
        return int8_full(source, data.train.take(CALIBRATION_IMAGES)[0], args.max_accuracy_drop)
    if variant == "distilled" and source.task.name != "classification":
        raise InputError("--variants distilled: distillation softens a classifier's outputs; "
                         f"{source.uri} is a {source.task.name}")
    if variant in litert.QUANTIZATIONS:
        return litert.convert(source.model, variant), {}
    if variant.startswith("pruned-"):
        from trial_image.compress.pruning import MagnitudePruning, sparsity

        target = int(variant.split("-")[1]) / 100
        model = keras.models.clone_model(source.model)
        model.set_weights(source.model.get_weights())
        keras.utils.set_random_seed(args.seed)
        steps = args.prune_epochs * int(np.ceil(data.train.count / 64))
        model.compile(optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(1e-3, steps)),
            loss=source.task.compile_arguments()["loss"])
        model.fit(data.train.batches(64, shuffle_seed=args.seed,
                                     augment=data.family.augment("light")),
                  epochs=args.prune_epochs, shuffle=False,
                  callbacks=[MagnitudePruning(target, int(steps * 0.7))], verbose=0)
        return litert.convert(model, "float32"), {"Sparsity": sparsity(model)}
    from trial_image.builder import build_model
    from trial_image.compress.distillation import distill

    spec = source.student_spec(args.student_run)
    student = distill(lambda: build_model(spec, data.train), source.model, data.train,
                      temperature=args.temperature, alpha=args.alpha,
                      epochs=args.distill_epochs, learning_rate=spec.training.learning_rate,
                      seed=args.seed)
    return litert.convert(student, "float32"), {"Parameter-Count": float(student.count_params()),
                                                "Temperature": args.temperature,
                                                "Alpha": args.alpha}


def int8_full(source: Source, calibration: np.ndarray, max_drop: float) -> tuple[bytes, dict]:
    """Full-integer int8 with one weight scale per convolution kernel, the smaller file, unless
    that costs more than ``max_drop`` (points of test accuracy, or percent of RMSE: the budget
    the variant is registered under): then one scale per output channel, the
    accuracy-preserving standard."""
    per_tensor = litert.convert(source.model, "int8-full", calibration, per_channel=False)
    score = source.score_of(per_tensor)
    measured = f"Per-Tensor-{source.task.test_metric}"
    if source.task.worse_by(source.score, score) <= max_drop:
        return per_tensor, {"Per-Channel-Scales": 0.0, measured: score}
    return (litert.convert(source.model, "int8-full", calibration, per_channel=True),
            {"Per-Channel-Scales": 1.0, measured: score})


class Source:
    """The registered model being compressed: its version, run, Keras model and data."""

    def __init__(self, uri: str, retry_seconds: float) -> None:
        import mlflow
        from mlflow import MlflowClient

        from trial_image import data as datasets
        from trial_image.mlflow_connection import default_tracking_uri, parse_model_uri, retry
        from trial_image.serving import load_keras

        self.retry = lambda action, what: retry(action, what, retry_seconds)
        self.uri = uri
        mlflow.set_tracking_uri(default_tracking_uri())
        self.mlflow, self.client = mlflow, MlflowClient()
        parsed = parse_model_uri(uri)
        if parsed is None:
            raise InputError(f"--model-uri: expected models:/NAME@ALIAS or models:/NAME/N, "
                             f"got {uri!r}")
        self.name, alias, number = parsed
        self.version = self.retry(lambda: self.client.get_model_version_by_alias(
            self.name, alias) if alias else self.client.get_model_version(self.name, number),
            f"finding {uri}")
        self.run = self.retry(lambda: self.client.get_run(self.version.run_id),
                              "reading the model's run")
        if self.run.data.tags.get(tags.ROLE) == "variant":
            raise InputError(f"{uri} is itself a compressed variant; compress the float model")
        family = family_of(self.run.data.tags.get(tags.FAMILY))
        if family.compression:
            raise InputError(f"{uri} reads a {family}: {family.compression}")
        self.task = task_of(self.run.data.tags.get(tags.TASK))
        stored = f"models:/{self.name}/{self.version.version}"
        self.model = self.retry(lambda: load_keras(mlflow, stored, family), f"loading {uri}")
        params = self.run.data.params
        self.data = datasets.DataRequest.logged(self.run.data.tags.get(tags.DATASET), params,
                                                uri).load()
        if params.get("train_on") == "train+validation":  # a final model: what it trained on
            self.data = self.data.merged()  # calibrates, fine-tunes and teaches on the same
        self.score = self._score(self.model.predict_on_batch)

    def _score(self, predict: Any) -> float:
        """The task's test measure of ``predict`` (raw inputs → class scores or forecasts),
        one batch at a time: accuracy, or RMSE."""
        from trial_image.report import regression
        from trial_image.training import predictions

        truth, predicted = predictions(predict, self.data.test, self.task)
        if self.task.name == "classification":
            return float((truth == predicted).mean())
        return regression(truth, predicted)[0]["Test-RMSE"]

    def score_of(self, content: bytes) -> float:
        """The test measure of a ``.tflite`` file, run by the LiteRT interpreter."""
        return self._score(litert.LiteRT(content).predict)

    def student_spec(self, run_id: str) -> Any:
        from trial_image.spec import CandidateSpec

        with tempfile.TemporaryDirectory() as tmp:
            path = self.retry(lambda: self.client.download_artifacts(
                run_id, "candidate_spec.json", tmp), "reading the student's candidate spec")
            return CandidateSpec.from_dict(json.loads(Path(path).read_text()))

    def reference_row(self) -> dict[str, Any]:
        """The source model itself (Keras), for the comparison table."""
        return {"variant": "source (Keras)", self.task.test_metric: self.score,
                "Parameter-Count": float(self.model.count_params()),
                "File-Size-Bytes": float(sum(w.numpy().nbytes for w in self.model.weights))}

    def log_variant(self, variant: str, content: bytes, extra: dict[str, float]
                    ) -> dict[str, Any]:
        from trial_image.compress.pruning import compressed_size
        from trial_image.compress.pyfunc import log_model
        from trial_image.data.lineage import digest_tags, log_inputs
        from trial_image.mlflow_connection import racing

        model = litert.LiteRT(content)
        score = self._score(model.predict)
        sample = self.data.test.take(5)[0]
        task = self.task
        metrics = {task.test_metric: score,
                   task.loss_metric: round(task.worse_by(self.score, score), 6),
                   "File-Size-Bytes": float(len(content)),
                   "Compressed-Size-Bytes": float(compressed_size(content)),
                   "Inference-Latency-Ms": model.latency_ms(sample),
                   "Interpreter-Threads": float(litert.THREADS),
                   f"Source-{task.test_metric}": self.score,
                   "Parameter-Count": float(self.model.count_params()), **extra}
        source_model = f"models:/{self.name}/{self.version.version}"
        run_tags = {tags.ROLE: "variant", tags.VARIANT: variant, tags.SOURCE_MODEL: source_model,
                    tags.EXPERIMENT: self.run.data.tags.get(tags.EXPERIMENT, self.name),
                    tags.DATASET: self.data.name, "mlflow.parentRunId": self.run.info.run_id,
                    tags.TASK: task.name, tags.FAMILY: self.data.family.name,
                    **digest_tags(self.data)}
        created = self.retry(lambda: self.client.create_run(
            self.run.info.experiment_id, run_name=f"{self.name}-v{self.version.version}-"
            f"{variant}", tags=run_tags), f"creating the {variant} run")
        with tempfile.TemporaryDirectory() as tmp, \
                self.mlflow.start_run(run_id=created.info.run_id):
            path = Path(tmp) / f"{variant}.tflite"
            path.write_bytes(content)
            self.retry(lambda: racing(lambda: log_inputs(self.mlflow, self.data)),
                       "logging the datasets")
            self.retry(lambda: self.mlflow.log_metrics(metrics), "logging the variant's metrics")
            self.retry(lambda: self.mlflow.log_artifact(str(path)), "storing the .tflite file")
            self.retry(lambda: log_model(path, sample, self.data.num_classes or 1,
                                         self.data.columns),
                       "storing the variant's model")
        return {"variant": variant, "run_id": created.info.run_id, **metrics}

    def log_comparison(self, rows: list[dict[str, Any]]) -> None:
        from trial_image.report import size_figure

        run_id = self.run.info.run_id
        try:
            self.retry(lambda: self.client.log_text(run_id, json.dumps(rows, indent=2),
                                                    "compression/comparison.json"),
                       "logging the comparison")
            self.retry(lambda: self.client.log_figure(
                run_id, size_figure(rows, self.name, self.task.test_metric),
                f"compression/{self.task.measure.lower()}_vs_size.png"),
                "logging the measure-vs-size plot")
        except TrackingError as exc:
            print(f"compress: {exc} (the variants' runs are complete)", file=sys.stderr)
