"""The end-to-end suite runs on the repository's own cluster (docs/devcluster.md): Kubernetes'
and Katib's released binaries, built by ``make cluster-build``, started once for the package
(``python -m devcluster up``) unless one is already up, and stopped after the last end-to-end
test if it was started here. Nothing in it is mocked: the one stand-in is the node agent in
place of the kubelet."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

NAMESPACE = "nasflow"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    mlflow: str  # the host's MLflow, as this machine reaches it
    namespace: str = NAMESPACE

    def kubectl(self, *argv: str, stdin: str | None = None, check: bool = True
                ) -> subprocess.CompletedProcess:
        """The cluster's kubectl as its admin; ``check``: fail the test on an error."""
        from devcluster.kubectl import kubectl

        done = kubectl(*argv, stdin=stdin, check=False, timeout=120)
        if check:
            assert done.returncode == 0, f"kubectl {' '.join(argv)}: {done.stderr}"
        return done

    def client(self):
        from pipeline.cluster.client import KatibClient

        return KatibClient(namespace=self.namespace, kubeconfig=str(self.kubeconfig))


def pytest_collection_modifyitems(config, items):
    """``cluster_down`` tests stop the cluster: they run after every other end-to-end test (the
    rest of the suite runs with no cluster up)."""
    last = [item for item in items if item.get_closest_marker("cluster_down")]
    for item in last:
        items.remove(item)
    e2e = [i for i, item in enumerate(items) if "/e2e/" in str(item.path)]
    at = e2e[-1] + 1 if e2e else len(items)
    items[at:at] = last


def pytest_configure(config):
    config.addinivalue_line("markers", "cluster_down: stops the session's cluster; runs last")


@pytest.fixture(scope="package")
def cluster():
    from devcluster import processes
    from devcluster.host_services import MLFLOW_PORT
    from devcluster.layout import HOST_IP, KUBECONFIG

    if os.geteuid() != 0:
        pytest.fail("the end-to-end suite starts the development cluster, whose node agent makes "
                    "network namespaces: run the tests as root (CI does)")
    started = processes.running("kube-apiserver") is None
    if started:
        up = subprocess.run([sys.executable, "-m", "devcluster", "up"], cwd=ROOT,
                            capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
    yield Cluster(KUBECONFIG, f"http://{HOST_IP}:{MLFLOW_PORT}")
    if started and processes.running("kube-apiserver"):
        subprocess.run([sys.executable, "-m", "devcluster", "down"], cwd=ROOT, timeout=300)


def experiment(file: str, name: str | None = None, trials: int = 2, parallel: int = 1,
               epochs: int = 2, failures: int = 0, settings: dict[str, str] | None = None
               ) -> dict:
    """A manifest of manifests/experiments made small, as Katib's own e2e makes its examples:
    ``trials`` trials of ``epochs`` epochs, algorithm ``settings`` replaced, renamed
    ``<name>-<random>`` (its trials log to the MLflow experiment of that name)."""
    from pipeline.cluster.render import render

    documents = yaml.safe_load_all((ROOT / "manifests" / "experiments" / file).read_text())
    (raw,) = [d for d in documents if not name or d["metadata"]["name"] == name]
    body = render(copy.deepcopy(raw), name=f"{raw['metadata']['name'][:24]}-{uuid.uuid4().hex[:6]}",
                  namespace=NAMESPACE)
    body["spec"].update(maxTrialCount=trials, parallelTrialCount=parallel,
                        maxFailedTrialCount=failures)
    body["spec"]["objective"].pop("goal", None)
    for setting in body["spec"]["algorithm"].get("algorithmSettings", []):
        setting["value"] = (settings or {}).get(setting["name"], setting["value"])
    trial_spec = body["spec"]["trialTemplate"]["trialSpec"]
    container = trial_spec["spec"]["trainer"] if trial_spec["kind"] == "TrainJob" else \
        trial_spec["spec"]["template"]["spec"]["containers"][0]
    key = "command" if "command" in container else "args"
    container[key] = [a if not a.startswith("--epochs=") else f"--epochs={epochs}"
                      for a in container[key]]
    return body


def succeeded_with_runs(cluster: Cluster, found, highest: float = 1.0) -> tuple[list, list]:
    """The checks of Katib's own e2e on a small experiment (``experiment(trials=2)``) that ended:
    ``Succeeded`` at its budget, the optimal trial one of its 2 trials with an objective in (0,
    ``highest``], and one ``FINISHED`` run per trial in the host's MLflow. (trials, runs)."""
    from mlflow.tracking import MlflowClient

    from pipeline.cluster.client import condition
    from pipeline.promotion.optimal_trial import from_katib

    name = found.metadata.name
    assert condition(found) == "Succeeded", found.status.conditions[-1].message
    assert found.status.conditions[-1].reason == "ExperimentMaxTrialsReached"
    assert found.status.trials_succeeded == 2
    optimal = from_katib(found)
    assert optimal.value is not None and 0 < optimal.value <= highest
    trials = cluster.client().list_trials(name)
    assert len(trials) == 2 and optimal.trial in {t.metadata.name for t in trials}
    mlflow = MlflowClient(cluster.mlflow)
    logged = mlflow.get_experiment_by_name(name)
    assert logged is not None, f"no MLflow experiment {name} on the host's server"
    runs = mlflow.search_runs([logged.experiment_id])
    assert sorted(r.data.tags["katib.trial"] for r in runs) == \
        sorted(t.metadata.name for t in trials)  # one run per trial, however many nodes
    assert {r.info.status for r in runs} == {"FINISHED"}
    return trials, runs


def wait_for(what: str, check, timeout: float, every: float = 2.0):
    """``check()``'s first truthy value, polled; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
