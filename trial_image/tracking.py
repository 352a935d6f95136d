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
import errno
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from trial_image import tags
from trial_image.errors import TrackingError

T = TypeVar("T")
MAX_PARAM_LENGTH = 500  # longer values go to the JSON artifact only
# The MLflow UI shows an experiment in its model-training view (not the GenAI one) by this tag.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Errors of this machine, not of the server: retrying cannot help.
LOCAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG}
# Error codes of a server that answered but may answer differently later.
TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED",
                   "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED"}


def fail_fast_http() -> None:
    """MLflow retries each HTTP request up to 7 times with backoff (minutes); :func:`retry`
    bounds the retrying instead, so each request fails quickly. Users can still override."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Serialise opening a SQLite store: two processes creating the same new database at once
    would both run MLflow's schema migrations and one would fail (alembic's CommandError)."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    lock = Path(uri[len("sqlite:///"):] + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield  # the lock goes with the file's closing


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_outage(exc: BaseException) -> bool:
    """Could the same call succeed later? A server that is down, restarting, overloaded or
    locked (SQLite) — yes; a full or read-only disk, a refused request, a store MLflow will not
    open — no."""
    import requests
    from mlflow.exceptions import MlflowException, RestException

    network = (requests.exceptions.RequestException, ConnectionError, TimeoutError)
    for link in _chain(exc):
        if isinstance(link, OSError) and link.errno in LOCAL_ERRNOS:
            return False
    if isinstance(exc, network):
        return True
    if isinstance(exc, RestException):
        return exc.error_code in TRANSIENT_CODES
    if isinstance(exc, MlflowException):
        text = str(exc)
        return (any(isinstance(link, network) for link in _chain(exc))
                or "database is locked" in text
                or re.search(r"error code (5\d\d|429)\b", text) is not None)
    return isinstance(exc, OSError) and exc.errno is None


def access_problem(exc: BaseException) -> str | None:
    """One line for a server that refused who we are (401) or what we asked (403), saying what
    to set; None for anything else. Neither is an outage: retrying cannot help."""
    code = getattr(exc, "error_code", "")
    text = str(exc)
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if code == "UNAUTHENTICATED" or re.search(r"error code 401\b", text):
        given = f"user {user!r} and its password were refused" if user else "no credentials"
        return (f"MLflow says: not authenticated ({given}); set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN, or ~/.mlflow/credentials; "
                "on a cluster the Secret mlflow-credentials)")
    if code == "PERMISSION_DENIED" or re.search(r"error code 403\b", text):
        return (f"MLflow says: user {user or '(unknown)'!r} is not allowed to do this; grant it "
                "the permissions in docs/mlflow.md#permissions (nasflow mlflow grant)")
    return None


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def retry(action: Callable[[], T], what: str, seconds: float) -> T:
    """Run ``action`` until it succeeds or ``seconds`` have passed (exponential backoff).

    Only outages are retried (:func:`is_outage`); any other MLflow or file-system error becomes a
    :class:`TrackingError` at once, and a programming error surfaces as it is.
    """
    from mlflow.exceptions import MlflowException

    deadline = time.monotonic() + seconds
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return action()
        except (MlflowException, OSError) as exc:
            refused = access_problem(exc)
            if refused:
                raise TrackingError(f"{what} failed: {refused}") from None
            if not is_outage(exc):
                raise TrackingError(f"{what} failed: {_first_line(exc)}") from None
            if time.monotonic() + delay > deadline:
                raise TrackingError(f"{what} failed after {attempt} attempt(s) in "
                                    f"{seconds:.0f}s: {_first_line(exc)}") from None
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


def open_experiment(uri: str, name: str, retry_seconds: float) -> tuple[Any, Any]:
    """A client of ``uri`` and its experiment ``name`` (created, and tagged for MLflow's model
    training view, if new): retried while MLflow is unreachable, one TrackingError otherwise.
    Client calls only: MLflow's process-wide active experiment is left alone."""
    import mlflow
    from mlflow.exceptions import MlflowException

    fail_fast_http()

    def get_or_create() -> Any:
        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                client.create_experiment(name, tags=EXPERIMENT_KIND)
            except MlflowException:  # a parallel trial created it first
                if client.get_experiment_by_name(name) is None:
                    raise
            found = client.get_experiment_by_name(name)
        return found

    with store_lock(uri):
        # Opening the store can fail for good (MLflow refuses its file store unless
        # MLFLOW_ALLOW_FILE_STORE=true; a bad URI): one line, exit 4.
        client = retry(lambda: mlflow.MlflowClient(uri), f"opening MLflow at {uri}", 0)
        retry(lambda: client.search_experiments(max_results=1),
              f"connecting to MLflow at {uri}", retry_seconds)
        experiment = retry(get_or_create, f"opening MLflow experiment {name!r}", retry_seconds)
        for key, value in EXPERIMENT_KIND.items():
            if experiment.tags.get(key) != value:  # created by someone else
                retry(lambda k=key, v=value: client.set_experiment_tag(
                    experiment.experiment_id, k, v), "tagging the MLflow experiment",
                    retry_seconds)
    return client, experiment

RACES = ("unique constraint", "already exists", "database is locked")


def racing(action: Callable[[], T]) -> T:
    """Run an idempotent write again when a concurrent writer made the server's
    check-then-insert collide (a UNIQUE constraint, SQLite's lock): registry writes, and the
    dataset inputs of trials that start together on the same data."""
    from mlflow.exceptions import MlflowException

    for attempt in range(8):
        try:
            return action()
        except MlflowException as exc:
            text = str(exc).lower()
            if attempt == 7 or not any(s in text for s in RACES):
                raise
            time.sleep(0.05 * 2 ** attempt)
    raise AssertionError("unreachable")


def or_none(action: Callable[[], T]) -> T | None:
    """``action()``, or None where MLflow says what it reads (a model, version, alias, user)
    does not exist. An existing model without the alias answers 400 INVALID_PARAMETER_VALUE
    ("Registered model alias champion not found"), not RESOURCE_DOES_NOT_EXIST: both mean
    "none yet" (teams pre-create models). Any other error propagates."""
    from mlflow.exceptions import MlflowException

    try:
        return action()
    except MlflowException as exc:
        text = str(exc)
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
                exc.error_code == "INVALID_PARAMETER_VALUE" and "alias" in text
                and "not found" in text):
            return None
        raise


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → (name, alias, version); None if it
    is neither."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", uri)
    return match.groups() if match else None  # type: ignore[return-value]

class Tracker:
    def __init__(self, uri: str, experiment: str, retry_seconds: float) -> None:
        import mlflow

        self.mlflow = mlflow
        self.retry_seconds = retry_seconds
        self.run_id = ""
        self._sender = ThreadPoolExecutor(max_workers=1)  # one worker keeps epochs in order
        self._unsent: list = []
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

    def log_inputs(self, data: Any) -> None:
        """The splits the run reads, as MLflow dataset inputs (one request)."""
        from trial_image.data.lineage import log_inputs

        retry(lambda: racing(lambda: log_inputs(self.mlflow, data)), "logging the datasets",
              self.retry_seconds)

    def set_tags(self, tags: dict[str, str]) -> None:
        retry(lambda: self.mlflow.set_tags(tags), "setting tags", self.retry_seconds)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Queue one epoch's metrics for the background sender; never blocks training."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        batch = [Metric(k, v, timestamp, epoch) for k, v in metrics.items()]
        self._sender.submit(self._send, batch)

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
                                          "window" if data.family == "series" else "image")]),
                outputs=Schema([TensorSpec(example.dtype, (-1, model.output_shape[-1]))]),
            )
            model_id = retry(
                lambda: mlflow.tensorflow.log_model(
                    model,
                    name="model",
                    signature=signature,
                    input_example=example,
                    # Explicit requirements: inferring them reloads the model in a fresh Python
                    # process, 6 s of a ~6.1 s log_model call on this machine.
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

        version = retry(lambda: or_none(
            lambda: self.client.get_model_version_by_alias(name, alias) if alias else
            self.client.get_model_version(name, number)), f"finding {uri}", self.retry_seconds)
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
