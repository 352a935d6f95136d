"""``--checkpoint-dir``: a trial killed with ``kill -9`` after epoch 3 of 6 resumes after epoch 3
and ends exactly as the uninterrupted trial (op determinism is on in every trial); a stale or
damaged checkpoint is never trained on silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import mlflow

from tests.conftest import ROOT, run_trial

ARGS = ["--epochs", "6", "--batch-size", "16", "--num-layers", "2", "--seed", "3",
        "--patience", "2", "--experiment-name", "checkpoints", "--mlflow-retry-seconds", "5"]


def lines(stdout: str) -> list[str]:
    """Katib's metric lines without their timestamps or the latency (a timing)."""
    return [line.split(" ", 1)[1] for line in stdout.splitlines()
            if "=" in line and "Latency" not in line]


def kill_after_epoch(epoch: int, args: list[str], cwd, uri: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KATIB_"))}
    env.update({"MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT)})
    proc = subprocess.Popen([sys.executable, "-m", "trial_image", *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if line.startswith(f"checkpoint: epoch {epoch} saved"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


def history(uri: str, run_name: str) -> list[tuple[int, float]]:
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("checkpoints").experiment_id
    [run] = client.search_runs([experiment], f"attributes.run_name = '{run_name}'")
    assert run.info.status == "FINISHED"
    return [(m.step, m.value) for m in client.get_metric_history(run.info.run_id,
                                                                 "Validation-Accuracy")]


def test_a_killed_trial_resumes_after_its_last_epoch_and_ends_as_if_never_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    whole = run_trial([*ARGS, "--trial-name", "whole", "--checkpoint-dir", "whole"], tmp_path, uri)
    assert whole.returncode == 0, whole.stderr[-2000:]

    kill_after_epoch(3, [*ARGS, "--trial-name", "cut", "--checkpoint-dir", "cut"], tmp_path, uri)
    assert json.loads((tmp_path / "cut" / "latest.json").read_text())["epoch"] == 3
    resumed = run_trial([*ARGS, "--trial-name", "cut", "--checkpoint-dir", "cut"], tmp_path, uri)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "checkpoint: resuming after epoch 3" in resumed.stderr
    trained = [int(line.split()[2]) for line in resumed.stderr.splitlines()
               if line.startswith("checkpoint: epoch ")]
    assert trained == [4, 5, 6]  # epochs 1-3 are not trained again
    # Katib's lines: epochs 1-3 replayed from the checkpoint, then 4-6 and the final metrics,
    # every value equal to the uninterrupted trial's
    assert lines(resumed.stdout) == lines(whole.stdout)
    # the same MLflow run goes on: one value per epoch, the uninterrupted run's values
    assert history(uri, "cut") == history(uri, "whole")
    assert [step for step, _ in history(uri, "cut")] == [1, 2, 3, 4, 5, 6]
    state = json.loads((tmp_path / "cut" / "latest.json").read_text())
    assert state["finished"] and state["epoch"] == 6
    assert [p.name for p in (tmp_path / "cut").glob("epoch-*")] == ["epoch-0006"]


def test_a_stale_checkpoint_is_replaced_and_a_damaged_one_refused(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [*ARGS[:4], "--epochs", "1", "--trial-name", "t", "--checkpoint-dir", "ck",
            "--experiment-name", "checkpoints", "--skip-test"]
    first = run_trial([*args, "--seed", "1"], tmp_path, uri)
    assert first.returncode == 0, first.stderr[-2000:]
    other_seed = run_trial([*args, "--seed", "2"], tmp_path, uri)
    assert other_seed.returncode == 0, other_seed.stderr[-2000:]
    assert "for another candidate, training, seed or data: starting from epoch 0" in \
        other_seed.stderr
    assert '"seed": 2' in json.loads((tmp_path / "ck" / "latest.json").read_text())["fingerprint"]

    (tmp_path / "ck" / "latest.json").write_text("{not json")
    damaged = run_trial([*args, "--seed", "2"], tmp_path, uri)
    assert damaged.returncode == 2
    assert "--checkpoint-dir: " in damaged.stderr and "is not a nasflow checkpoint" in \
        damaged.stderr
    assert "Traceback" not in damaged.stderr

    (tmp_path / "a-file").write_text("")
    not_a_folder = run_trial(["a-file" if a == "ck" else a for a in args], tmp_path, uri)
    assert not_a_folder.returncode == 2
    assert "--checkpoint-dir: a-file is not a folder this trial can write" in not_a_folder.stderr
