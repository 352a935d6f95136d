"""One MLflow run per trial: parameters, per-epoch metrics, final metrics, a loadable model.

Failure policy: an outage (a server that is down or restarting, a locked SQLite store) is
retried with backoff for ``retry_seconds`` before any training starts, then the trial fails fast
(exit 4); anything retrying cannot fix (a full or read-only disk, a refused request, a store MLflow
will not open) fails at once, with one line, exit 4. Per-epoch metrics go to the server from one
background thread so training never waits on the network; batches the server refused (it
dropped mid-run) are kept and re-sent at the end.
The model upload is retried the same way; if it still fails the trial exits non-zero, so Katib
never counts a trial whose model is not stored as succeeded.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from trial_image import tags
from trial_image.errors import TrackingError
from trial_image.mlflow_connection import (
    open_experiment,
    parse_model_uri,
    racing,
    retry,
    version_or_none,
)

MAX_PARAM_LENGTH = 500  # longer values go to the JSON artifact only


class Tracker:
    def __init__(self, uri: str, experiment: str, retry_seconds: float) -> None:
        import mlflow

        self.mlflow = mlflow
        self.retry_seconds = retry_seconds
        self.run_id = ""
        self._sender = ThreadPoolExecutor(max_workers=1)  # one worker keeps epochs in order
        self._unsent: list = []
        self._logged: dict[str, set[int]] = {}  # a resumed run's steps, by metric
        self.client, found = open_experiment(uri, experiment, retry_seconds)
        mlflow.set_tracking_uri(uri)  # the trial's own process: its run and model are fluent
        mlflow.set_experiment(experiment_id=found.experiment_id)

    def start(self, run_name: str, parent_run_id: str | None, tags: dict[str, str],
              params: dict[str, Any], artifacts: dict[str, Any], resume_run: str = "") -> str:
        """A new run, or ``resume_run`` reopened (a trial resumed from its checkpoint) when it
        is still there and not FINISHED."""
        if resume_run and self._resumable(resume_run):
            run = retry(lambda: self.mlflow.start_run(run_id=resume_run, tags=tags),
                        "reopening the MLflow run", self.retry_seconds)
        else:
            run = retry(lambda: self.mlflow.start_run(run_name=run_name,
                                                      parent_run_id=parent_run_id, tags=tags),
                        "starting the MLflow run", self.retry_seconds)
        short = {k: v for k, v in params.items() if len(str(v)) <= MAX_PARAM_LENGTH}
        retry(lambda: self.mlflow.log_params(short), "logging parameters", self.retry_seconds)
        for name, content in artifacts.items():
            retry(lambda n=name, c=content: self.mlflow.log_dict(c, n),
                  f"logging {name}", self.retry_seconds)
        self.run_id = run.info.run_id
        return self.run_id

    def _resumable(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.status != "FINISHED"
        except MlflowException:
            return False

    def log_artifacts(self, texts: dict[str, str], figures: dict[str, Any]) -> None:
        """Text files and matplotlib figures under the run's artifacts (paths as keys)."""
        for path, text in texts.items():
            retry(lambda t=text, p=path: self.mlflow.log_text(t, p), f"logging {path}",
                  self.retry_seconds)
        for path, figure in figures.items():
            retry(lambda f=figure, p=path: self.mlflow.log_figure(f, p), f"logging {path}",
                  self.retry_seconds)

    def log_arrays(self, path: str, **arrays: Any) -> None:
        """NumPy arrays as one ``.npz`` artifact at ``path``."""
        import numpy as np

        folder, name = path.rpartition("/")[::2]
        with tempfile.TemporaryDirectory() as tmp:
            np.savez(Path(tmp, name), **arrays)
            retry(lambda: self.mlflow.log_artifact(str(Path(tmp, name)), folder or None),
                  f"logging {path}", self.retry_seconds)

    def log_inputs(self, data: Any) -> None:
        """The splits the run reads, as MLflow dataset inputs (one request)."""
        from trial_image.data.lineage import log_inputs

        retry(lambda: racing(lambda: log_inputs(self.mlflow, data)), "logging the datasets",
              self.retry_seconds)

    def set_tags(self, tags: dict[str, str]) -> None:
        retry(lambda: self.mlflow.set_tags(tags), "setting tags", self.retry_seconds)

    def log_epoch(self, epoch: int, metrics: dict[str, float], replayed: bool = False) -> None:
        """Queue one epoch's metrics for the background sender; never blocks training. A
        ``replayed`` epoch (a resumed trial's, from its checkpoint) is sent where the run lacks
        it: a trial killed right after saving a checkpoint may not have sent that epoch yet."""
        from mlflow.entities import Metric

        if replayed:
            metrics = {k: v for k, v in metrics.items() if epoch not in self._logged_steps(k)}
            if not metrics:
                return
        timestamp = int(time.time() * 1000)
        batch = [Metric(k, v, timestamp, epoch) for k, v in metrics.items()]
        self._sender.submit(self._send, batch)

    def _logged_steps(self, key: str) -> set[int]:
        if key not in self._logged:
            history = retry(lambda: self.client.get_metric_history(self.run_id, key),
                            f"reading the run's {key}", self.retry_seconds)
            self._logged[key] = {m.step for m in history}
        return self._logged[key]

    def _send(self, batch: list) -> None:
        # MLflow's own async logging drops a batch the server refused; keep it for finish().
        try:
            self.client.log_batch(self.run_id, metrics=batch)
        except Exception:  # noqa: BLE001 - kept; finish() re-sends them and reports a failure
            self._unsent.extend(batch)

    def _flush_epochs(self) -> None:
        self._sender.shutdown(wait=True)
        if self._unsent:
            retry(lambda: self.client.log_batch(self.run_id, metrics=self._unsent),
                  "re-sending per-epoch metrics", self.retry_seconds)

    def finish(self, final_metrics: dict[str, float], model: Any, example: Any,
               data: Any) -> None:
        """Store metrics and model (``None``: no model), then end the run FINISHED;
        TrackingError if impossible. The model is stored before the final metrics, which are
        then logged linked to it: MLflow links a new model to the run's metrics by reading the
        history of every metric the run has (one request each), so this order saves one request
        per final metric (12 of a trial's ~50)."""
        import mlflow.tensorflow
        from mlflow.models import ModelSignature
        from mlflow.types import Schema, TensorSpec

        self._flush_epochs()
        model_id = None
        if model is not None and data.columns:
            from trial_image.serving import log_table_model

            model_id = retry(lambda: log_table_model(model, data.columns, data.classes, example),
                             "storing the model in MLflow", self.retry_seconds)
        elif model is not None:
            signature = ModelSignature(
                inputs=Schema([TensorSpec(example.dtype, (-1, *example.shape[1:]),
                                          data.family.tensor_input)]),
                outputs=Schema([TensorSpec(example.dtype, (-1, model.output_shape[-1]))]),
            )
            model_id = retry(
                lambda: mlflow.tensorflow.log_model(
                    model,
                    name="model",
                    signature=signature,
                    input_example=example,
                    # Explicit requirements: inferring them reloads the model in a fresh Python
                    # process, nearly all of a log_model call (docs/benchmarks.md).
                    pip_requirements=mlflow.tensorflow.get_default_pip_requirements(),
                ),
                "storing the model in MLflow",
                self.retry_seconds,
            ).model_id
        retry(lambda: self.mlflow.log_metrics(final_metrics, model_id=model_id),
              "logging final metrics", self.retry_seconds)
        retry(lambda: self.mlflow.end_run("FINISHED"), "ending the MLflow run", self.retry_seconds)

    def registered_measure(self, uri: str, split: Any, task: Any) -> tuple[float | None, str]:
        """The task's measure (accuracy, RMSE) of the registered model ``models:/NAME@ALIAS``
        (or ``models:/NAME/VERSION``) on ``split`` (the champion on this run's test split),
        and which version that was; (None, why) when there is none yet."""
        from trial_image.serving import frame_of
        from trial_image.training import predictions

        parsed = parse_model_uri(uri)
        if parsed is None:
            raise TrackingError(f"--evaluate-model: expected models:/NAME@ALIAS or "
                                f"models:/NAME/VERSION, got {uri!r}")
        name, alias, number = parsed

        version = retry(lambda: version_or_none(self.client, name, alias, number),
                        f"finding {uri}", self.retry_seconds)
        if version is None:
            return None, f"{uri}: none yet"
        model = retry(lambda: self.mlflow.pyfunc.load_model(
            f"models:/{name}/{version.version}"), f"loading {uri}", self.retry_seconds)
        try:
            truth, predicted = predictions(
                lambda x: model.predict(frame_of(x) if isinstance(x, dict) else x), split, task)
        except Exception as exc:  # noqa: BLE001 - the model is loaded: any failure is its input
            # another lookback, other columns: the champion cannot read this test split
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            return None, f"models:/{name}/{version.version} cannot read this test split: {first}"
        if task.name == "classification":
            measured = float((truth == predicted).mean())
        else:
            from trial_image.report import regression

            measured = regression(truth, predicted)[0]["Test-RMSE"]
        return measured, f"models:/{name}/{version.version}"

    def end(self, status: str, reason: str) -> None:
        """Best effort: end the run FAILED or KILLED with its reason; never raises."""
        if self.mlflow.active_run() is None:
            return
        # Independently: if the tag cannot be written (the server or disk is why we fail),
        # end_run still takes the run off MLflow's stack before it calls the server, so MLflow's
        # exit handler can never mark a failed run FINISHED.
        with contextlib.suppress(Exception):
            self.mlflow.set_tag(tags.FAILURE_REASON, reason[:5000])
        with contextlib.suppress(Exception):
            self.mlflow.end_run(status)
