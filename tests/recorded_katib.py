"""Katib's objects as Katib v0.19.0 wrote them on the development cluster
(tests/data/katib/recorded/, by tests/e2e/record.py), as the fake API server serves them to the
fast tests. Each recorded experiment is served under its manifest's name (the recording's
random suffix dropped from every name that carries it); nothing else is changed."""

from __future__ import annotations

import copy

import yaml

from tests.conftest import ROOT
from tests.fake_kube import FakeKubeApi

RECORDINGS = ROOT / "tests/data/katib/recorded"
MANIFEST_PATH = ROOT / "manifests/experiments/random-digits.yaml"
MANIFEST = yaml.safe_load(MANIFEST_PATH.read_text())
NS = "nasflow"


def _served(recording: str, name: str) -> dict:
    """A recording with its experiment's name replaced by ``name`` wherever it occurs."""
    text = (RECORDINGS / f"{recording}.yaml").read_text()
    recorded_name = yaml.safe_load(text)["experiment"]["metadata"]["name"]
    return yaml.safe_load(text.replace(recorded_name, name))


# random-digits, 3 trials: the first one's pod deleted mid-run (Failed), then two Succeeded
RECORDED = _served("failed", "random-digits")
# asha-digits, 4 trials: 2 EarlyStopped by nasflow's ASHA, 2 Succeeded
EARLY_STOPPED = _served("early-stopped", "asha-digits")
# random-digits with a collector filter no metric line matches: 1 trial MetricsUnavailable
METRICS_UNAVAILABLE = _served("metrics-unavailable", "random-digits-unavailable")


def experiment(snapshot: str = "experiment", name: str = "random-digits",
               version: str | None = None, labels: dict[str, str] | None = None) -> dict:
    """The recorded random-digits Experiment (``experimentRunning``: while it ran), renamed."""
    obj = copy.deepcopy(RECORDED[snapshot])
    if name != "random-digits":
        obj = yaml.safe_load(yaml.safe_dump(obj).replace("random-digits", name))
    obj["metadata"]["labels"] = labels or {}
    if version:
        obj["metadata"]["resourceVersion"] = version
    return obj


def trials(recording: dict = RECORDED) -> list[dict]:
    return copy.deepcopy(recording["trials"])


def outcome(trial: dict) -> str:
    """The type of the trial's last true condition (Succeeded, Failed, EarlyStopped …)."""
    return next(c["type"] for c in reversed(trial["status"]["conditions"])
                if c["status"] == "True")


def recorded_api() -> FakeKubeApi:
    """The fake API server holding the recorded Experiments, their Trials and Suggestions."""
    api = FakeKubeApi()
    for recording in (RECORDED, EARLY_STOPPED, METRICS_UNAVAILABLE):
        api.add("experiments", copy.deepcopy(recording["experiment"]))
        for trial in trials(recording):
            api.add("trials", trial)
        api.add("suggestions", copy.deepcopy(recording["suggestion"]))
    return api
