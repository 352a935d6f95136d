"""The whole local story: `nasflow run` a small search, `nasflow promote` it, serve the champion.

Real trials on digits, a real MLflow server (SQLite) on 127.0.0.1, the real registry, and the
model loaded back as `models:/NAME@champion` with mlflow.pyfunc.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT
from tests.test_engine_e2e import small

pytestmark = pytest.mark.slow


def nasflow(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_run_promote_serve(mlflow_server, tmp_path):
    path = small("random-digits.yaml", "story", trials=3, epochs=2, tmp_path=tmp_path)
    workdir = str(tmp_path / ".nasflow")
    run = nasflow("run", path, "--tracking-uri", mlflow_server.uri, "--workdir", workdir,
                  "--output", "json", "--seed", "3", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    status = json.loads(run.stdout)
    best = status["currentOptimalTrial"]
    best_value = float(next(m["max"] for m in best["observation"]["metrics"]
                            if m["name"] == "Validation-Accuracy"))

    model = "story-digits"
    promote = nasflow("promote", "story", "--model", model, "--tracking-uri", mlflow_server.uri,
                      "--workdir", workdir, "--output", "json", cwd=tmp_path)
    assert promote.returncode == 0, promote.stderr[-3000:]
    decision = json.loads(promote.stdout)
    assert decision["decision"] == "champion" and decision["created"] is True
    assert decision["score"] == pytest.approx(best_value)
    again = nasflow("promote", "story", "--model", model, "--tracking-uri", mlflow_server.uri,
                    "--workdir", workdir, cwd=tmp_path)
    assert again.returncode == 0
    assert again.stdout.strip().endswith(": champion (already registered: no new version)")

    client = MlflowClient(mlflow_server.uri)
    champion = client.get_model_version_by_alias(model, "champion")
    assert champion.tags["nasflow.trial"] == best["bestTrialName"]
    assert champion.tags["nasflow.experiment"] == "story"
    assert champion.tags["nasflow.algorithm"] == "random"
    run_metrics = client.get_run(champion.run_id).data.metrics

    from trial_image.data import load

    mlflow.set_tracking_uri(mlflow_server.uri)
    served = mlflow.pyfunc.load_model(f"models:/{model}@champion")
    data = load("digits")
    probabilities = np.asarray(served.predict(data.x_test.astype(np.float32)))
    assert probabilities.shape == (len(data.x_test), 10)
    accuracy = float(np.mean(probabilities.argmax(axis=1) == data.y_test))
    assert accuracy == pytest.approx(run_metrics["Test-Accuracy"], abs=1e-6)

    missing = nasflow("promote", "nope", "--model", model, "--tracking-uri", mlflow_server.uri,
                      "--workdir", workdir, "--source", "local", cwd=tmp_path)
    assert missing.returncode == 2 and "no local run of 'nope'" in missing.stderr
