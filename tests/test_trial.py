"""Real trials as Katib runs them: a subprocess on digits, a real MLflow server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.engine.metrics_collector import UNSET_TIME, parse_json, parse_text
from tests.conftest import run_trial, wire_example
from tests.test_frontends import KATIB_GENOTYPE, adapted_nn_config
from trial_image import data as datasets

pytestmark = pytest.mark.slow
EPOCH_METRICS = ["Training-Accuracy", "Training-Loss", "Validation-Accuracy", "Validation-Loss"]
FINAL_METRICS = ["Test-Accuracy", "Parameter-Count", "Model-Size-Bytes", "Inference-Latency-Ms"]

FRONT_ENDS = {
    "hyperparameters": ["--num_blocks=2", "--filters=16", "--kernel-size-2=5", "--pooling=avg",
                        "--dense-units=32", "--dropout=0.1", "--lr=0.01", "--optimizer=adam"],
    # Exactly what the local engine passes for Katib's template: the literal quotes survive.
    "enas": ['--architecture="' + wire_example("ENAS architecture") + '"',
             '--nn_config="' + adapted_nn_config() + '"', "--lr=0.005"],
    "genotype": ["--genotype=" + KATIB_GENOTYPE, "--num-layers=3", "--init-channels=8",
                 "--lr=0.01"],
}


def find_run(uri: str, experiment: str, trial: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"tags.`katib.trial` = '{trial}'")
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_trial_trains_reports_and_logs_a_loadable_model(front_end, mlflow_server, tmp_path):
    trial = f"digits-{front_end}-1"
    result = run_trial(
        [*FRONT_ENDS[front_end], "--epochs=4", "--batch-size=32", "--experiment-name=digits",
         "--search-space=unit", "--algorithm=random", f"--metrics-file={tmp_path}/metrics.log"],
        tmp_path, mlflow_server.uri, env={"KATIB_TRIAL_NAME": trial})
    assert result.returncode == 0, result.stderr[-3000:]

    # Katib's StdOut collector, default filter: four metrics per epoch, then the final ones.
    names = EPOCH_METRICS + FINAL_METRICS
    observed = parse_text(result.stdout.splitlines(), names)
    for name in EPOCH_METRICS:
        values = [float(o.value) for o in observed if o.name == name]
        assert len(values) == 4, (name, values)
    assert all(o.timestamp != UNSET_TIME for o in observed)  # each line carries its time
    assert {o.name for o in observed} == set(names)
    file_observed = parse_text((tmp_path / "metrics.log").read_text().splitlines(), names)
    assert [(o.name, o.value) for o in file_observed] == [(o.name, o.value) for o in observed]

    run = find_run(mlflow_server.uri, "digits", trial)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == trial
    assert run.data.tags["katib.experiment"] == "digits"
    assert run.data.tags["katib.namespace"] == "local"
    assert run.data.tags["nasflow.search_space"] == "unit"
    assert run.data.tags["nasflow.algorithm"] == "random"
    assert run.data.tags["nasflow.frontend"] == front_end
    assert run.data.params["epochs"] == "4"
    assert run.data.params["dataset"] == "digits"
    client = MlflowClient(mlflow_server.uri)
    history = client.get_metric_history(run.info.run_id, "Validation-Accuracy")
    assert sorted(m.step for m in history) == [1, 2, 3, 4]
    stdout_val = [float(o.value) for o in observed if o.name == "Validation-Accuracy"]
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(stdout_val)
    for name in FINAL_METRICS:
        assert name in run.data.metrics
    assert run.data.metrics["Parameter-Count"] > 0
    spec_path = client.download_artifacts(run.info.run_id, "candidate_spec.json", str(tmp_path))
    spec = json.loads(Path(spec_path).read_text())
    assert spec["source"] == front_end

    mlflow.set_tracking_uri(mlflow_server.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    digits = datasets.load("digits")
    predictions = np.asarray(model.predict(digits.test.x))
    assert predictions.shape == (len(digits.test.x), 10)
    accuracy = float(np.mean(predictions.argmax(axis=1) == digits.test.y))
    assert accuracy == pytest.approx(run.data.metrics["Test-Accuracy"], abs=1e-6)
    if front_end == "hyperparameters":
        assert accuracy > 0.5  # it learned something in 4 epochs


def test_same_seed_same_metrics(tmp_path):
    args = ["--epochs=3", "--seed=7", "--filters=8"]
    uri = f"sqlite:///{tmp_path}/m.db"
    first = run_trial(args, tmp_path, uri)
    second = run_trial(args, tmp_path, uri)
    assert first.returncode == second.returncode == 0, first.stderr[-2000:]
    names = ["Validation-Accuracy", "Training-Loss", "Test-Accuracy"]

    def values(result):
        return [(o.name, o.value) for o in parse_text(result.stdout.splitlines(), names)]

    assert values(first) == values(second)
    other = run_trial([*args[:1], "--seed=8", args[2]], tmp_path, uri)
    assert values(other) != values(first)


def test_json_metrics_file_as_katib_reads_it(tmp_path):
    result = run_trial(["--epochs=2", "--filters=8", f"--metrics-file={tmp_path}/m.json",
                        "--metrics-format=json"], tmp_path, f"sqlite:///{tmp_path}/m.db")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = (tmp_path / "m.json").read_text().splitlines()
    first = json.loads(lines[0])
    assert isinstance(first.pop("timestamp"), float)
    assert all(isinstance(v, str) for v in first.values())  # Katib ignores non-string values
    observed = parse_json(lines, ["Validation-Accuracy", "Test-Accuracy"])
    assert [o.name for o in observed] == ["Validation-Accuracy"] * 2 + ["Test-Accuracy"]
    assert all(0 <= float(o.value) <= 1 for o in observed)


def test_nested_under_parent_run(mlflow_server, tmp_path):
    client = MlflowClient(mlflow_server.uri)
    exp_id = client.create_experiment("nested-parent-test")
    parent = client.create_run(exp_id, run_name="experiment")
    result = run_trial(["--epochs=1", "--filters=8", "--experiment-name=nested-parent-test",
                        "--trial-name=child"], tmp_path, mlflow_server.uri,
                       env={"MLFLOW_PARENT_RUN_ID": parent.info.run_id})
    assert result.returncode == 0, result.stderr[-2000:]
    client.set_terminated(parent.info.run_id)
    child = find_run(mlflow_server.uri, "nested-parent-test", "child")
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id


def assert_no_running_runs(uri: str) -> None:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    assert running == []


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--architecture=[[27], [29, 0", "--nn_config={}"], 2,
         "--architecture: not a valid Katib value"),
        (["--architecture=[[5]]", "--nn_config={'num_layers': 1, 'input_sizes': [8, 8, 1], "
          "'output_sizes': [10], 'embedding': {'5': {'opt_id': 5, 'opt_type': 'lstm', "
          "'opt_params': {'heads': '2'}}}}"], 2, "unknown opt_type 'lstm'"),
        (["--dataset=npz:/nonexistent/data.npz"], 2, "npz:/nonexistent/data.npz: no such file"),
        (["--dataset=imagenet"], 2, "unknown dataset 'imagenet'"),
        (["--optimizer=sgd", "--learning-rate=1e12", "--dense-units=64", "--epochs=3"], 3,
         "loss became NaN/inf in epoch 1"),
        (["--kernel-size-3=5"], 2, "--kernel-size-3: there are only 2 block(s)"),
    ],
)
def test_bad_input_fails_clearly(args, code, message, mlflow_server, tmp_path):
    result = run_trial([*args, "--experiment-name=bad-input"], tmp_path, mlflow_server.uri)
    assert result.returncode == code, result.stderr[-2000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("trial failed: ") and message in last_line, last_line
    assert "Traceback" not in result.stderr
    assert_no_running_runs(mlflow_server.uri)
    if code == 3:
        (run,) = MlflowClient(mlflow_server.uri).search_runs(
            [MlflowClient(mlflow_server.uri).get_experiment_by_name("bad-input").experiment_id],
            "attributes.status = 'FAILED'")
        assert "NaN" in run.data.tags["nasflow.failure_reason"]


def test_unreachable_server_fails_fast_before_training(tmp_path):
    from tests.mlflow_server import free_port

    result = run_trial(["--epochs=1", "--mlflow-retry-seconds=3"], tmp_path,
                       f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 4
    assert "connecting to MLflow at http://127.0.0.1" in result.stderr
    assert "Validation-Accuracy" not in result.stdout  # nothing was trained


def test_server_dropping_mid_run_loses_nothing(tmp_path):
    """The server dies after the first epoch and comes back: the run and model are complete."""
    import subprocess
    import sys
    import threading
    import time

    from tests.conftest import ROOT
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path / "server").start()
    env = {"MLFLOW_TRACKING_URI": server.uri, "PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "trial_image", "--epochs=12", "--patience=100", "--filters=32",
         "--num-blocks=3", "--pooling=none", "--trial-name=drop", "--experiment-name=drop"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout_lines: list[str] = []

    def outage() -> None:
        for line in proc.stdout:
            stdout_lines.append(line)
            if "Validation-Loss" in line and len(stdout_lines) == 4:  # end of epoch 1
                server.stop()
                time.sleep(4)
                server.start()
    reader = threading.Thread(target=outage)
    reader.start()
    proc.wait(300)
    reader.join()
    try:
        assert proc.returncode == 0, proc.stderr.read()[-3000:]
        run = find_run(server.uri, "drop", "drop")
        assert run.info.status == "FINISHED"
        history = MlflowClient(server.uri).get_metric_history(run.info.run_id, "Training-Loss")
        assert sorted({m.step for m in history}) == list(range(1, 13))
        mlflow.set_tracking_uri(server.uri)
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        assert np.asarray(model.predict(np.zeros((3, 8, 8, 1), "float32"))).shape == (3, 10)
    finally:
        server.stop()
