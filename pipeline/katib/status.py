"""Katib's trial and experiment condition names (``status.conditions[].type``), and its clock."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum


class TrialStatus(StrEnum):
    """A trial's condition, as Katib's trial controller names it."""

    CREATED = "Created"  # in the embedded engine: waiting to run (again, after an interruption)
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    KILLED = "Killed"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    EARLY_STOPPED = "EarlyStopped"


FINISHED = frozenset({TrialStatus.SUCCEEDED, TrialStatus.FAILED, TrialStatus.KILLED,
                      TrialStatus.METRICS_UNAVAILABLE, TrialStatus.EARLY_STOPPED})
FAILED = frozenset({TrialStatus.FAILED, TrialStatus.METRICS_UNAVAILABLE})  # maxFailedTrialCount
SCORED = (TrialStatus.SUCCEEDED, TrialStatus.EARLY_STOPPED)  # trials whose objective counts


class ExperimentCondition(StrEnum):
    """An experiment's condition, as Katib's experiment controller names it."""

    CREATED = "Created"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


ENDED = (ExperimentCondition.SUCCEEDED, ExperimentCondition.FAILED)


def now_rfc3339() -> str:
    """Now, in the timestamp format Katib (and Kubernetes) write and its collectors read."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
