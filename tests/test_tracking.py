"""The trial's MLflow failure policy: which errors are outages worth retrying, and that a failed run
can never end up FINISHED."""

from __future__ import annotations

import errno
import subprocess
import sys
import textwrap
import time

import pytest
import requests
from mlflow.exceptions import MlflowException, RestException

from tests.conftest import ROOT
from trial_image.errors import TrackingError
from trial_image.mlflow_connection import is_outage, retry


def _wrapped(cause: BaseException) -> MlflowException:
    try:
        try:
            raise cause
        except BaseException as exc:  # noqa: BLE001 - whatever the cause, wrapped as MLflow does
            raise MlflowException(f"API request failed with exception {exc}") from None
    except MlflowException as outer:
        return outer


@pytest.mark.parametrize(("exc", "outage"), [
    (requests.exceptions.ConnectionError("refused"), True),
    (_wrapped(requests.exceptions.ConnectionError("refused")), True),
    (MlflowException("(sqlite3.OperationalError) database is locked"), True),
    (MlflowException("API request to /api failed with error code 503 != 200"), True),
    (RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"}), True),
    (RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}), False),
    (MlflowException("The filesystem tracking backend is in maintenance mode"), False),
    (OSError(errno.ENOSPC, "No space left on device"), False),
    (OSError(errno.EROFS, "Read-only file system"), False),
    (_wrapped(OSError(errno.ENOSPC, "No space left on device")), False),
])
def test_outage_or_not(exc, outage):
    assert is_outage(exc) is outage


def test_a_full_disk_fails_at_once_not_after_the_retry_time():
    def write():
        raise OSError(errno.ENOSPC, "No space left on device")

    started = time.monotonic()
    with pytest.raises(TrackingError, match=r"storing the model failed: .*No space left"):
        retry(write, "storing the model", seconds=120)
    assert time.monotonic() - started < 1


def test_an_outage_is_retried_until_the_deadline():
    calls = []

    def down():
        calls.append(time.monotonic())
        raise requests.exceptions.ConnectionError("refused")

    with pytest.raises(TrackingError, match=r"failed after \d attempt\(s\) in 2s"):
        retry(down, "connecting", seconds=2)
    assert len(calls) >= 2


def test_a_run_whose_end_fails_is_never_marked_finished_at_exit(tmp_path):
    """The server (or disk) refuses the FAILED status; MLflow's exit handler must not then end
    the run FINISHED, as if it had stored a model."""
    script = textwrap.dedent(f"""
        import mlflow
        from mlflow import MlflowClient
        from trial_image.tracking import Tracker

        tracker = Tracker("sqlite:///{tmp_path}/m.db", "exit", 5)
        tracker.start("t", None, {{}}, {{}}, {{}})
        real = MlflowClient.set_terminated
        def refuse(self, *args, **kwargs):
            raise OSError(28, "No space left on device")
        MlflowClient.set_terminated = refuse
        mlflow.set_tag = lambda *a, **k: refuse(None)
        tracker.end("FAILED", "disk full")
        MlflowClient.set_terminated = real  # space is back by the time the process exits
        print(tracker.run_id)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{tmp_path}/m.db").get_run(result.stdout.split()[-1])
    assert run.info.status == "RUNNING"  # not FINISHED; the engine or `nasflow status` ends it


def test_a_resumed_run_is_sent_the_replayed_epochs_it_lacks_once(tmp_path):
    """A trial killed right after saving its checkpoint of epoch 3 may not have sent epoch 3 to
    MLflow (its sender is asynchronous); the resumed trial replays epochs 1-3 from the
    checkpoint and sends epoch 3 only."""
    uri = f"sqlite:///{tmp_path}/m.db"

    def trial(body: str) -> str:
        script = textwrap.dedent(f"""
            from trial_image.tracking import Tracker
            tracker = Tracker({uri!r}, "resume", 5)
        """) + textwrap.dedent(body) + "\ntracker._sender.shutdown(wait=True)\n"
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.strip()

    run_id = trial("""
        print(tracker.start("t", None, {}, {}, {}))
        for epoch in (1, 2):
            tracker.log_epoch(epoch, {"Validation-Accuracy": epoch / 10})
        import os; tracker._sender.shutdown(wait=True); os._exit(0)  # killed: still RUNNING
    """)
    trial(f"""
        tracker.start("t", None, {{}}, {{}}, {{}}, resume_run={run_id!r})
        for epoch in (1, 2, 3):
            tracker.log_epoch(epoch, {{"Validation-Accuracy": epoch / 10}}, replayed=True)
        tracker.log_epoch(4, {{"Validation-Accuracy": 0.4}})
    """)
    from mlflow import MlflowClient

    history = MlflowClient(uri).get_metric_history(run_id, "Validation-Accuracy")
    assert sorted((m.step, m.value) for m in history) == [(1, 0.1), (2, 0.2), (3, 0.3), (4, 0.4)]
