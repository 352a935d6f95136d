"""The digits experiments on a real cluster with Katib (skipped unless one is configured).

    NASFLOW_E2E_KUBECONFIG=~/.kube/config          the cluster (required)
    NASFLOW_E2E_NAMESPACE=nasflow                   with manifests/base applied
    NASFLOW_E2E_TRIAL_IMAGE=nasflow-trial:0.1.0     loaded into the cluster (kind load ...)
    NASFLOW_E2E_MLFLOW_URI=http://127.0.0.1:5000    optional: the MLflow the trials log to, as
                                                    this machine reaches it (port-forward);
                                                    then the best model is promoted too
    NASFLOW_E2E_TRAINER=1                           Kubeflow Trainer v2 installed and
                                                    manifests/trainer applied: the TrainJob
                                                    experiments (1 and 2 nodes) run too

Like Katib's own e2e: maxTrialCount 2, parallelTrialCount 1, maxFailedTrialCount 0, then the
checks of Katib's verify.py, then delete.
"""

from __future__ import annotations

import copy
import os
import uuid

import pytest
import yaml

from tests.conftest import ROOT

KUBECONFIG = os.environ.get("NASFLOW_E2E_KUBECONFIG")
pytestmark = pytest.mark.skipif(
    not KUBECONFIG, reason="no cluster: set NASFLOW_E2E_KUBECONFIG to a kubeconfig of a cluster "
    "with Katib and manifests/base applied (see README, 'Running on a cluster')")
# darts-digits: two searches whose derived networks' validation accuracy is the objective, read
# by the second of its two collector filters. mnas-evolution-digits: nasflow's evolution served
# by nasflow's suggestion service (kubectl apply -k manifests/suggestion, the nasflow-suggestion
# image loaded into the cluster), with MnasNet's Reward as the objective.
needs_trainer = pytest.mark.skipif(not os.environ.get("NASFLOW_E2E_TRAINER"), reason=(
    "Kubeflow Trainer: set NASFLOW_E2E_TRAINER=1 once it is installed and manifests/trainer "
    "applied"))
EXPERIMENTS = ["random-digits.yaml", "tpe-digits.yaml", "enas-digits.yaml", "darts-digits.yaml",
               "mnas-digits.yaml#mnas-evolution-digits",
               pytest.param("trainjob/random-digits-trainjob.yaml", marks=needs_trainer),
               pytest.param("trainjob/random-digits-2-nodes.yaml", marks=needs_trainer)]


@pytest.fixture(scope="module")
def client():
    from pipeline.cluster.client import KatibClient

    return KatibClient(namespace=os.environ.get("NASFLOW_E2E_NAMESPACE", "nasflow"),
                       kubeconfig=KUBECONFIG)


def small(raw: dict) -> dict:
    from pipeline.cluster.render import render

    body = render(raw, name=f"{raw['metadata']['name'][:24]}-e2e-{uuid.uuid4().hex[:6]}",
                  image=os.environ.get("NASFLOW_E2E_TRIAL_IMAGE", "nasflow-trial:0.1.0"))
    body["spec"].update(maxTrialCount=2, parallelTrialCount=1, maxFailedTrialCount=0)
    body["spec"]["objective"].pop("goal", None)
    trial_spec = body["spec"]["trialTemplate"]["trialSpec"]
    container = trial_spec["spec"]["trainer"] if trial_spec["kind"] == "TrainJob" else \
        trial_spec["spec"]["template"]["spec"]["containers"][0]
    container["command"] = [a.replace("--epochs=15", "--epochs=2") for a in container["command"]]
    return body


@pytest.mark.parametrize("manifest", EXPERIMENTS)
def test_experiment_succeeds_on_katib(client, manifest):
    from pipeline.cluster.client import condition
    from pipeline.promotion.optimal_trial import from_katib
    from pipeline.validation import validate

    file, _, name = manifest.partition("#")
    documents = yaml.safe_load_all((ROOT / "manifests" / "experiments" / file).read_text())
    (raw,) = [d for d in documents if not name or d["metadata"]["name"] == name]
    body = small(copy.deepcopy(raw))
    assert validate(manifest, body)[1] == []
    name = body["metadata"]["name"]
    client.create_experiment(body)
    try:
        experiment = client.wait(name, timeout=2400)
        assert condition(experiment) == "Succeeded", experiment.status.conditions[-1].message
        status = experiment.status
        assert experiment.status.conditions[-1].reason == "ExperimentMaxTrialsReached"
        assert (status.trials_succeeded or 0) + (status.trials_early_stopped or 0) == 2
        optimal = from_katib(experiment)
        assert optimal.value is not None and 0 < optimal.value <= 1.5  # a Reward may exceed 1
        trials = client.list_trials(name)
        assert len(trials) == 2 and optimal.trial in {t.metadata.name for t in trials}
        uri = os.environ.get("NASFLOW_E2E_MLFLOW_URI")
        if uri:
            from pipeline.promotion.registry import Registry

            decision = Registry(uri, f"e2e-{name}").promote(optimal)
            assert decision.decision == "champion"
    finally:
        client.delete_experiment(name)
