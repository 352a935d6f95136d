"""The embedded engine end to end: real trials on digits, a real MLflow server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.cli import main
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def small(manifest: str, name: str, trials: int, epochs: int, tmp_path) -> str:
    doc = yaml.safe_load((ROOT / "manifests" / "experiments" / manifest).read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = name
    doc["spec"]["maxTrialCount"] = trials
    for count in ("parallelTrialCount", "maxFailedTrialCount"):  # Katib: at most maxTrialCount
        doc["spec"][count] = min(doc["spec"][count], trials)
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["command"] = [a.replace("--epochs=15", f"--epochs={epochs}")
                            for a in container["command"]]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def test_random_search_on_digits_with_mlflow(mlflow_server, tmp_path):
    path = small("random-digits.yaml", "e2e-random", trials=3, epochs=3, tmp_path=tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", path, "--tracking-uri", mlflow_server.uri,
         "--workdir", str(tmp_path / ".nasflow"), "--output", "json", "--seed", "1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    status = json.loads(result.stdout)
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert status["trialsSucceeded"] == 3
    optimal = status["currentOptimalTrial"]
    accuracy = next(m for m in optimal["observation"]["metrics"]
                    if m["name"] == "Validation-Accuracy")
    assert float(accuracy["max"]) > 0.3

    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(status["mlflowParentRunId"])
    assert parent.info.status == "FINISHED"
    assert parent.data.params["algorithm"] == "random"
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"experiment.yaml", "leaderboard.json", "best_so_far.png",
            "objective_vs_parameters.png"} <= artifacts
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert len(children) == 3 and all(r.info.status == "FINISHED" for r in children)
    names = {r.data.tags["katib.trial"] for r in children}
    assert optimal["bestTrialName"] in names
    best = next(r for r in children if r.data.tags["katib.trial"] == optimal["bestTrialName"])
    assert best.data.metrics["Best-Validation-Accuracy"] == pytest.approx(float(accuracy["max"]))
    assert best.data.tags["katib.experiment"] == "e2e-random"  # from ${trialSpec.Labels[...]}


def test_space_command(capsys):
    assert main(["space", str(ROOT / "manifests/experiments/enas-digits.yaml")]) == 0
    out = capsys.readouterr().out
    # 8 conv + 8 separable + 2 depthwise + 2 reduction = 20 operations, 4 layers, 6 skip bits
    assert "1.024e+07 candidates (20 operations ^ 4 layers × 2 ^ 6 skip bits)" in out
    assert "budget: 20 trials, 2 at a time, 15 epochs each" in out


def test_warm_workers_give_the_same_trials_as_fresh_processes(tmp_path):
    """Three trials through one reused warm worker = the same trials as three new processes."""
    path = small("random-digits.yaml", "e2e-warm", trials=3, epochs=2, tmp_path=tmp_path)
    doc = yaml.safe_load(Path(path).read_text())
    doc["spec"]["parallelTrialCount"] = 1
    Path(path).write_text(yaml.safe_dump(doc, sort_keys=False))
    observations = {}
    for mode in ("warm", "cold"):
        args = [sys.executable, "-m", "pipeline", "run", path, "--no-mlflow", "--quiet",
                "--workdir", str(tmp_path / mode), "--output", "json"]
        result = subprocess.run([*args, *(["--cold-trials"] if mode == "cold" else [])],
                                cwd=tmp_path, capture_output=True, text=True, timeout=600,
                                env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                                     "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/{mode}.db"})
        assert result.returncode == 0, result.stderr[-3000:]
        assert json.loads(result.stdout)["trialsSucceeded"] == 3
        from pipeline.engine.state import StateStore

        trials = StateStore(tmp_path / mode / "e2e-warm" / "state.db").trials()
        observations[mode] = [  # everything but the measured latency
            (t.assignments, {k: v for k, v in t.observations.items()
                             if k != "Inference-Latency-Ms"}) for t in trials]
    assert observations["warm"] == observations["cold"]


def test_run_shows_only_progress_and_summary(tmp_path):
    """No TensorFlow start-up lines (the ENAS controller imports TensorFlow in the engine) and no
    MLflow INFO lines (a new SQLite store) between the progress lines."""
    path = small("enas-digits.yaml", "quiet", trials=2, epochs=1, tmp_path=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MLFLOW_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", path, "--workdir", str(tmp_path / ".nasflow"),
         "--tracking-uri", f"sqlite:///{tmp_path}/fresh.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**env, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    progress = (r"^\[[#.]{24}\] \d+/\d+ done, \d+ running, \d+ failed \| best \S+ \| "
                r"\d\d:\d\d elapsed")
    assert lines and all(re.match(progress, line) for line in lines), lines
    assert result.stdout.startswith("experiment quiet: Succeeded")
