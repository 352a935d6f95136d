"""What the registry lets this user do, found before it matters: a model the story could not
register into, refused before any training; an experiment hidden from the user, named with the
permission it lacks (MLflow's search hides it, which read as "no finished run")."""

from __future__ import annotations

import os
from typing import Any

from trial_image.contract import TrackingError, or_none, retry


def preflight(registry: Any, models: list[str]) -> None:
    """Refuse, in one line (TrackingError) and before any training, where the story could not
    register into ``models``: a model that exists is written to without a change (its own
    description again), which needs the permission registering a version needs; one that does
    not exist yet is created by the story, and its creator may do everything."""
    for name in models:
        found = retry(lambda n=name: or_none(lambda: registry.client.get_registered_model(n)),
                      f"reading registered model {name}", registry.retry_seconds)
        if found is not None:
            retry(lambda n=name, d=found.description or "":
                  registry.client.update_registered_model(n, d),
                  f"checking that registered model {name} can be changed",
                  registry.retry_seconds)


def readable(registry: Any, experiment: str) -> None:
    """Where the trials' experiment exists but is hidden from the user, say which permission is
    missing (TrackingError, exit 4)."""
    from mlflow.exceptions import MlflowException

    try:
        registry.client.get_experiment_by_name(experiment)
    except MlflowException as exc:
        if exc.error_code == "PERMISSION_DENIED":
            user = os.environ.get("MLFLOW_TRACKING_USERNAME", "(unknown)")
            raise TrackingError(
                f"MLflow says: user {user!r} may not read MLflow experiment {experiment!r}, "
                "where its trials logged their runs: grant it READ or more (nasflow mlflow "
                f"grant {user} --experiment {experiment})") from None
        raise
