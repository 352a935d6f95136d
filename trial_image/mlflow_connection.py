"""Talking to an MLflow server that may be down, restarting, locked or refusing: what is an
outage (retried with backoff for ``retry_seconds``) and what is not (one line at once, exit 4),
who may do what (basic-auth), the store lock for SQLite, and the experiment a run goes to. The
trial's :class:`trial_image.tracking.Tracker` and the pipeline (through
:mod:`trial_image.contract`) both talk to MLflow through it."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from trial_image.errors import TrackingError

T = TypeVar("T")
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


def version_or_none(client: Any, name: str, alias: str | None = None,
                    number: str | None = None) -> Any | None:
    """Version ``number`` of model ``name``, or the one holding ``alias``; None where there is
    none yet. MLflow's basic-auth cannot resolve a permission for a model that does not exist
    and refuses (403) to read its alias; the model read then says whether it exists."""
    from mlflow.exceptions import MlflowException

    try:
        return or_none(lambda: client.get_model_version_by_alias(name, alias) if alias
                       else client.get_model_version(name, number))
    except MlflowException as exc:
        if exc.error_code == "PERMISSION_DENIED" and \
                or_none(lambda: client.get_registered_model(name)) is None:
            return None
        raise


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` → (name, alias, version); None if it
    is neither."""
    match = re.fullmatch(r"models:/([^/@]+)(?:@(.+)|/(\d+))", uri)
    return match.groups() if match else None  # type: ignore[return-value]
