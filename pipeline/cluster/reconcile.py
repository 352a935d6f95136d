"""MLflow runs left RUNNING by trials Katib ended.

A trial whose pod was deleted or ran out of time is killed; if its process could not end its run
(an older image, a SIGKILL after the grace period), the run would stay RUNNING in the UI forever.
``nasflow status`` and ``nasflow pipeline`` end such runs: KILLED for a Killed or EarlyStopped
trial, FAILED for a Failed one, with the trial's reason as ``nasflow.failure_reason``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.cluster.client import condition, current_condition
from pipeline.katib.status import TrialStatus
from trial_image.contract import fail_fast_http, retry, tags

RUN_STATUS = {TrialStatus.KILLED: "KILLED", TrialStatus.EARLY_STOPPED: "KILLED",
              TrialStatus.FAILED: "FAILED"}


def end_orphaned_runs(experiment: str, namespace: str, trials: Sequence[Any], tracking_uri: str,
                      retry_seconds: float) -> list[str]:
    """End the RUNNING runs of ``trials`` that Katib ended; returns the trials' names."""
    ended = {t.metadata.name: t for t in trials if condition(t) in RUN_STATUS}
    if not ended:
        return []
    from mlflow import MlflowClient

    fail_fast_http()
    client = MlflowClient(tracking_uri)
    found = retry(lambda: client.get_experiment_by_name(experiment),
                  f"connecting to MLflow at {tracking_uri}", retry_seconds)
    if found is None:
        return []
    runs = retry(lambda: client.search_runs(
        [found.experiment_id], f"tags.`katib.experiment` = '{experiment}' and "
        "attributes.status = 'RUNNING'"), "finding runs left running", retry_seconds)
    names = []
    for run in runs:
        trial = ended.get(run.data.tags.get(tags.TRIAL))
        if trial is None or run.data.tags.get(tags.NAMESPACE, namespace) != namespace:
            continue
        last = current_condition(trial)
        reason = f"Katib trial {condition(trial)}: {last.reason or ''} {last.message or ''}"
        retry(lambda r=run, why=reason: client.set_tag(r.info.run_id, tags.FAILURE_REASON,
                                                       why.strip()[:5000]),
              "tagging a run", retry_seconds)
        retry(lambda r=run, t=trial: client.set_terminated(r.info.run_id,
                                                           RUN_STATUS[condition(t)]),
              "ending a run", retry_seconds)
        names.append(trial.metadata.name)
    return sorted(names)
