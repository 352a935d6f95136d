"""TrainJob trials on real Kubeflow Trainer v2.3.0 and JobSet v0.12.0: ``kubectl apply -k
manifests/trainer`` (nasflow's TrainingRuntime and Katib's RBAC for TrainJobs), then the
TrainJob experiments of manifests/experiments/trainjob, made small: Katib creates each trial's
TrainJob, Trainer a JobSet of one Indexed Job of numNodes pods, the two nodes of a 2-node trial
train together (MultiWorkerMirroredStrategy, peers at JobSet's host names), and the chief alone
reports to Katib and logs the run."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.conftest import experiment, succeeded_with_runs

TRAINJOBS = {1: "trainjob/random-digits-trainjob.yaml", 2: "trainjob/random-digits-2-nodes.yaml"}


@pytest.fixture(scope="module")
def trainjobs(cluster):
    cluster.kubectl("apply", "-k", "manifests/base")
    cluster.kubectl("apply", "-k", "manifests/trainer")
    bodies = {nodes: experiment(file) for nodes, file in TRAINJOBS.items()}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bodies.values()))
    client = cluster.client()
    yield {nodes: client.wait(body["metadata"]["name"], timeout=900)
           for nodes, body in bodies.items()}
    for body in bodies.values():
        client.delete_experiment(body["metadata"]["name"])


@pytest.mark.parametrize("nodes", list(TRAINJOBS))
def test_trainjob_experiment_succeeds_on_katib_and_trainer(cluster, trainjobs, nodes):
    trials, runs = succeeded_with_runs(cluster, trainjobs[nodes])
    for trial in trials:  # Katib read each trial's end from its TrainJob's conditions (JobSet's)
        reason = trial.status.conditions[-1].reason
        assert reason == "TrialSucceeded. Job reason: AllJobsCompleted", reason
    assert {r.data.tags["nasflow.workers"] for r in runs} == {str(nodes)}
