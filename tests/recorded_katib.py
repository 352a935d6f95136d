"""Katib's objects as its controllers write them for manifests/experiments/random-digits.yaml
(tests/data/katib/random-digits.yaml), as the fake API server serves them."""

from __future__ import annotations

import copy

import yaml

from tests.conftest import ROOT
from tests.fake_kube import FakeKubeApi

RECORDED = yaml.safe_load((ROOT / "tests/data/katib/random-digits.yaml").read_text())
MANIFEST_PATH = ROOT / "manifests/experiments/random-digits.yaml"
MANIFEST = yaml.safe_load(MANIFEST_PATH.read_text())
NS = "nasflow"


def experiment(snapshot: str, name: str = "random-digits", version: str | None = None,
               labels: dict[str, str] | None = None) -> dict:
    """A recorded Experiment: the manifest's spec with Katib's defaults, the recorded status."""
    obj = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
           **copy.deepcopy(RECORDED[snapshot])}
    spec = copy.deepcopy(MANIFEST["spec"])
    spec["resumePolicy"] = "Never"
    spec["objective"]["metricStrategies"] = [
        {"name": n, "value": "max"} for n in
        [spec["objective"]["objectiveMetricName"], *spec["objective"]["additionalMetricNames"]]]
    obj["spec"] = spec
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"] = labels or {}
    if version:
        obj["metadata"]["resourceVersion"] = version
    optimal = obj["status"].get("currentOptimalTrial")
    if optimal:
        optimal["bestTrialName"] = optimal["bestTrialName"].replace("random-digits", name)
    return obj


def trial(entry: dict) -> dict:
    return {
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Trial",
        "metadata": {"name": entry["name"], "namespace": NS,
                     "creationTimestamp": entry["created"],
                     "labels": {"katib.kubeflow.org/experiment": "random-digits"},
                     "ownerReferences": [{"apiVersion": "kubeflow.org/v1beta1",
                                          "kind": "Experiment", "name": "random-digits",
                                          "uid": RECORDED["experimentRunning"]["metadata"]["uid"],
                                          "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"objective": MANIFEST["spec"]["objective"],
                 "parameterAssignments": [{"name": k, "value": v}
                                          for k, v in entry["parameterAssignments"].items()],
                 "primaryContainerName": "training-container",
                 "metricsCollector": {"collector": {"kind": "StdOut"}},
                 "runSpec": {"apiVersion": "batch/v1", "kind": "Job"}},
        "status": {"conditions": entry["conditions"],
                   "observation": {"metrics": entry["metrics"]}},
    }



def recorded_api() -> FakeKubeApi:
    """The fake API server holding the recorded Experiment, its Trials and its Suggestion."""
    api = FakeKubeApi()
    api.add("experiments", experiment("experimentSucceeded"))
    for entry in RECORDED["trials"]:
        api.add("trials", trial(entry))
    api.add("suggestions", {"apiVersion": "kubeflow.org/v1beta1", "kind": "Suggestion",
                            **RECORDED["suggestion"]})
    return api
