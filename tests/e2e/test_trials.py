"""What Katib does with nasflow's trials when things go wrong or get cut short: a trial pod
deleted mid-run, and trials stopped by nasflow's ASHA through Katib's early-stopping protocol."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import experiment, wait_for

pytestmark = pytest.mark.slow


def _runs(cluster, name: str) -> dict[str, str]:
    """trial name -> status of its MLflow run on the host's server."""
    from mlflow.tracking import MlflowClient

    mlflow = MlflowClient(cluster.mlflow)
    logged = mlflow.get_experiment_by_name(name)
    if logged is None:
        return {}
    return {r.data.tags["katib.trial"]: r.info.status
            for r in mlflow.search_runs([logged.experiment_id])}


def _trial_pods(cluster, trial: str) -> list[dict]:
    import json

    pods = cluster.kubectl("-n", cluster.namespace, "get", "pods", "-l",
                           f"batch.kubernetes.io/job-name={trial}", "-o", "json")
    return json.loads(pods.stdout)["items"]


def test_trial_pod_deleted_mid_run_fails_the_trial_and_the_search_goes_on(cluster):
    from pipeline.cluster.client import condition

    # Katib fails the experiment when failed trials reach maxFailedTrialCount: 2 lets one fail
    body = experiment("random-digits.yaml", trials=3, parallel=1, failures=2, epochs=6)
    name = body["metadata"]["name"]
    client = cluster.client()
    client.create_experiment(body)
    try:
        first = wait_for("the first trial", lambda: client.list_trials(name), timeout=300)[0]
        trial = first.metadata.name
        # deleted once its run is open in MLflow and training has begun
        wait_for(f"{trial}'s MLflow run", lambda: _runs(cluster, name).get(trial) == "RUNNING",
                 timeout=300, every=1.0)
        (pod,) = wait_for(f"{trial}'s pod", lambda: _trial_pods(cluster, trial), timeout=60)
        cluster.kubectl("-n", cluster.namespace, "delete", "pod", pod["metadata"]["name"],
                        "--wait=false")
        done = client.wait(name, timeout=900)
        trials = {t.metadata.name: condition(t) for t in client.list_trials(name)}
        assert trials[trial] == "Failed", trials
        assert sorted(trials.values()) == ["Failed", "Succeeded", "Succeeded"]
        assert condition(done) == "Succeeded"
        assert done.status.trials_failed == 1 and done.status.trials_succeeded == 2
        runs = _runs(cluster, name)
        assert runs[trial] in ("FAILED", "KILLED"), runs
    finally:
        client.delete_experiment(name)


def test_asha_on_katib_early_stops_trials(cluster):
    """nasflow's ASHA served as Katib's EarlyStopping service: Katib's collector applies the
    first rung's rule to the trials created after others reached it, and Katib's controller
    ends the stopped ones EarlyStopped."""
    from pipeline.cluster.client import condition

    body = experiment("asha-digits.yaml", trials=6, parallel=1, failures=0, epochs=3)
    name = body["metadata"]["name"]
    client = cluster.client()
    client.create_experiment(body)
    try:
        done = client.wait(name, timeout=1200)
        assert condition(done) == "Succeeded", done.status.conditions[-1].message
        trials = {t.metadata.name: condition(t) for t in client.list_trials(name)}
        stopped = [t for t, c in trials.items() if c == "EarlyStopped"]
        assert stopped and set(trials.values()) <= {"Succeeded", "EarlyStopped"}, trials
        assert done.status.trials_early_stopped == len(stopped)
        runs = _runs(cluster, name)
        assert all(runs[t] != "RUNNING" for t in stopped), runs
    finally:
        client.delete_experiment(name)
