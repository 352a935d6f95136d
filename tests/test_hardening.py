"""What a hostile user or a careless operator does to `nasflow validate|run|promote`: two engines on
one experiment, damaged state, a dead tracking server, NaN objectives, secrets in manifests,
hostile YAML. Each ends in one line and a documented exit code; nothing is lost or leaked."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.engine.state import StateStore
from tests.conftest import ROOT
from tests.mlflow_server import free_port
from tests.test_engine import experiment, reason, run, trials_so_far

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def nasflow(*args: str, cwd: Path, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def write(doc: dict, tmp_path: Path, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ---- 1. one engine per experiment ---------------------------------------------------------------

def test_a_second_engine_on_the_same_experiment_is_refused(tmp_path):
    path = write(experiment(max_trials=4, parallel=1, extra_args=["--sleep=0.4"]), tmp_path)
    first = nasflow("run", str(path), "--no-mlflow", "--quiet", cwd=tmp_path)
    db = tmp_path / ".nasflow" / "fake" / "state.db"
    deadline = time.monotonic() + 60
    while not trials_so_far(db):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    second = nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume", cwd=tmp_path)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 2
    assert f"being run by another nasflow (PID {first.pid} since " in one_line(err)
    assert first.wait(timeout=120) == 0
    trials = StateStore(db).trials()
    assert [t.index for t in trials] == [0, 1, 2, 3] and {t.status for t in trials} == {
        "Succeeded"}


def test_two_engines_started_at_once_on_a_fresh_workdir(tmp_path):
    """One runs the experiment, the other is refused at once."""
    path = write(experiment(max_trials=3, parallel=1, extra_args=["--sleep=0.5"]), tmp_path)
    both = [nasflow("run", str(path), "--no-mlflow", "--quiet", cwd=tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in both]
    assert sorted(p.returncode for p in both) == [0, 2]
    refused = next(err for p, (_, err) in zip(both, outputs, strict=True) if p.returncode == 2)
    assert "is being run by another nasflow (PID" in one_line(refused)
    assert len(StateStore(tmp_path / ".nasflow" / "fake" / "state.db").trials()) == 3


def test_two_experiments_creating_one_mlflow_store_at_once(tmp_path):
    """Both create the same new SQLite store: one runs MLflow's schema migrations, the other
    waits for it (before, one died with alembic's CommandError)."""
    paths = [write(experiment(name=name, max_trials=1, parallel=1), tmp_path, f"{name}.yaml")
             for name in ("first", "second")]
    uri = f"sqlite:///{tmp_path}/new.db"
    both = [nasflow("run", str(p), "--quiet", "--tracking-uri", uri, cwd=tmp_path)
            for p in paths]
    results = [p.communicate(timeout=180) for p in both]
    assert [p.returncode for p in both] == [0, 0], [err for _, err in results]
    # both reached the store: each experiment with its search's run, FINISHED (the fake trial
    # logs none of its own)
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    for name in ("first", "second"):
        found = client.get_experiment_by_name(name)
        assert found is not None, name
        runs = client.search_runs([found.experiment_id])
        assert [r.info.status for r in runs] == ["FINISHED"], name


# ---- 2. damaged state ---------------------------------------------------------------------------

@pytest.mark.parametrize("damage", ["half", "random", "empty"])
def test_damaged_state_is_reported_and_kept(tmp_path, damage):
    path = write(experiment(max_trials=2), tmp_path)
    assert main(["run", str(path), "--no-mlflow", "--quiet", "--workdir",
                 str(tmp_path / ".nasflow")]) == 0
    db = tmp_path / ".nasflow" / "fake" / "state.db"
    for extra in db.parent.glob("state.db-*"):
        extra.unlink()  # only the main file, as a copied or half-written one would be
    data = db.read_bytes()
    db.write_bytes({"half": data[:len(data) // 2], "random": os.urandom(len(data)),
                    "empty": b""}[damage])
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    resumed = nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 2
    line = one_line(err)
    assert f"the state of 'fake' in {db.relative_to(tmp_path)} is damaged" in line
    assert "--restart discards it" in line
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # never silently replaced
    restarted = nasflow("run", str(path), "--no-mlflow", "--quiet", "--restart", cwd=tmp_path)
    assert restarted.wait(timeout=60) == 0


@pytest.mark.parametrize("column, value", [
    ("trials.assignments", "{not json"), ("trials.observations", "[1, 2]"),
    ("trials.assignments", '{"x": 0.5}'), ("trials.status", "Exploded"),
    ("experiment.status", '{"conditions": [{"type": "Bogus"}]}'),
    ("experiment.data", "null")])
def test_a_damaged_state_row_is_reported_like_a_damaged_file(tmp_path, column, value):
    """Issue 21 finding 5: a schema-valid database with a bad value ended in "internal error:
    StateError" (exit 1); it is damaged state: exit 2 and the --restart hint."""
    import sqlite3

    path = write(experiment(max_trials=2), tmp_path)
    assert main(["run", str(path), "--no-mlflow", "--quiet", "--workdir",
                 str(tmp_path / ".nasflow")]) == 0
    db = tmp_path / ".nasflow" / "fake" / "state.db"
    table, field = column.split(".")
    with sqlite3.connect(db) as connection:
        connection.execute(f"UPDATE {table} SET {field} = ?", (value,))
    resumed = nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume", cwd=tmp_path)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 2, err
    line = one_line(err)
    assert "the state of 'fake' in" in line and "--restart discards it" in line


@pytest.mark.parametrize("command", [
    ["finalize", "../../elsewhere/exp"], ["finalize", "/etc/exp"],
    ["promote", "../../elsewhere/exp"], ["promote", "/abs/exp"],
    ["status", "../x"], ["trials", "A_B"],
    ["compress", "models:/m@champion", "--max-accuracy-drop", "nan"],
    ["compress", "models:/m@champion", "--variants", "int4,../../x"],
    ["promote", "fake", "--min-accuracy", "inf"], ["finalize", "fake", "--top-k", "0"],
    ["run", "--seed", "-1"], ["run", "--mlflow-retry-seconds", "nan"],
    ["submit", "x.yaml", "--timeout", "-inf"]])
def test_names_and_numbers_are_checked_before_anything_starts(tmp_path, command, capsys):
    """Issue 21 findings 4-5: experiment names escaping the workdir, NaN budgets, unknown
    variants (refused only inside the compression process, exit 1, after ~5 s): all exit 2 at
    once, naming the argument."""
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--workdir", str(tmp_path / "w")] if command[0] in (
            "finalize", "promote", "run") else command)
    assert exit_.value.code == 2
    assert time.monotonic() - started < 1.0
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("where", ["file", "proc"])
def test_a_workdir_that_cannot_be_one_is_bad_input(tmp_path, where, capsys):
    afile = tmp_path / "afile"
    afile.write_text("")
    workdir = {"file": str(afile / "w"), "proc": "/proc/nasflow"}[where]
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--no-mlflow", "--workdir", workdir])
    assert exit_.value.code == 2
    assert {"file": f"{afile} is not a directory", "proc": "is under /proc"}[where] in \
        capsys.readouterr().err


# ---- 3. MLflow outages --------------------------------------------------------------------------

def test_run_against_a_dead_tracking_server_fails_in_bounded_time(tmp_path):
    path = write(experiment(max_trials=2), tmp_path)
    started = time.monotonic()
    proc = nasflow("run", str(path), "--quiet", "--mlflow-retry-seconds", "3",
                   "--tracking-uri", f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    elapsed = time.monotonic() - started
    assert proc.returncode == 4
    assert one_line(err).startswith("nasflow run: MLflow: connecting to MLflow at http://")
    assert elapsed < 3 + 8  # the retry budget plus start-up
    assert not (tmp_path / ".nasflow" / "fake").exists()  # no trial started, no state left


def test_promote_against_a_dead_tracking_server_fails_in_bounded_time(tmp_path):
    path = write(experiment(max_trials=2), tmp_path)
    assert main(["run", str(path), "--no-mlflow", "--quiet", "--workdir",
                 str(tmp_path / ".nasflow")]) == 0
    started = time.monotonic()
    proc = nasflow("promote", "fake", "--mlflow-retry-seconds", "3", "--tracking-uri",
                   f"http://127.0.0.1:{free_port()}", cwd=tmp_path)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4
    assert one_line(err).startswith("nasflow promote: MLflow: connecting to MLflow at http://")
    assert time.monotonic() - started < 3 + 8


def test_a_server_that_dies_mid_run_does_not_stop_the_search(tmp_path, capsys):
    from tests.mlflow_server import MlflowServer

    server = MlflowServer(tmp_path / "server").start()
    doc = experiment(max_trials=4, parallel=1, extra_args=["--sleep=0.3"])
    try:
        stopped = []

        def stop_after_first(progress: dict) -> None:
            if progress["done"] >= 1 and not stopped:
                server.stop()
                stopped.append(True)

        status, _ = run(doc, tmp_path, tracking_uri=server.uri, mlflow_retry_seconds=1,
                        on_progress=stop_after_first)
    finally:
        server.stop()
    assert reason(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert status["trialsSucceeded"] == 4
    err = capsys.readouterr().err
    assert "the experiment's leaderboard waits for it" in err or "stays incomplete" in err


# ---- 4. NaN objectives --------------------------------------------------------------------------

def test_a_nan_objective_is_no_observation(tmp_path):
    params = [{"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}]
    status, engine = run(experiment(params=params, max_trials=3, max_failed=1, parallel=1,
                                    extra_args=["--nan"]), tmp_path)
    assert {t.status for t in engine.trials} == {"MetricsUnavailable"}
    assert status["currentOptimalTrial"] is None
    assert reason(status) == ("Failed", "ExperimentFailed")
    assert status["trialMetricsUnavailable"] == 1  # Katib fails at maxFailedTrialCount=1


def test_nan_among_numbers_is_ignored():
    from pipeline.engine.metrics_collector import observable

    assert [observable(v) for v in ("0.5", "nan", "inf", "-inf", "", "unavailable",
                                    "Genotype(normal=[])")] == [
        True, False, False, False, False, False, True]


# ---- 5. secrets ---------------------------------------------------------------------------------

SECRET = "s3cr3t-value-never-stored"


def test_literal_env_values_are_redacted_everywhere_nasflow_stores(mlflow_server, tmp_path,
                                                                     capsys):
    from mlflow import MlflowClient

    doc = experiment(name="secrets", max_trials=1, parallel=1,
                     extra_args=[f"--echo-args={tmp_path}/echo.json"])
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["env"] = [{"name": "MLFLOW_TRACKING_PASSWORD", "value": SECRET},
                        {"name": "AWS_SECRET_ACCESS_KEY", "value": SECRET},
                        {"name": "MLFLOW_TRACKING_USERNAME", "valueFrom": {"secretKeyRef": {
                            "name": "creds", "key": "user", "optional": True}}}]
    path = write(doc, tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    env = "spec.trialTemplate.trialSpec.spec.template.spec.containers[0].env"
    assert out[:2] == [
        f"{path}: warning: {env}[0].value: MLFLOW_TRACKING_PASSWORD is written literally; put "
        "it in a Secret and use valueFrom.secretKeyRef",
        f"{path}: warning: {env}[1].value: AWS_SECRET_ACCESS_KEY is written literally; put it "
        "in a Secret and use valueFrom.secretKeyRef"]
    assert out[2] == f"{path}: valid"
    status, _ = run(doc, tmp_path, tracking_uri=mlflow_server.uri)
    assert status["trialsSucceeded"] == 1
    # the trial got the real value ...
    assert json.loads((tmp_path / "echo.json").read_text())["env"][
        "MLFLOW_TRACKING_PASSWORD"] == SECRET
    # ... and nothing nasflow stored has it
    for stored in (tmp_path / ".nasflow").rglob("*"):
        if stored.is_file() and "trials" not in stored.parts:
            assert SECRET.encode() not in stored.read_bytes(), stored
    client = MlflowClient(mlflow_server.uri)
    manifest = client.download_artifacts(status["mlflowParentRunId"], "experiment.yaml",
                                         str(tmp_path))
    text = Path(manifest).read_text()
    assert SECRET not in text and "<redacted>" in text and "secretKeyRef" in text


# ---- 6. hostile manifests -----------------------------------------------------------------------

VALID = yaml.safe_dump(experiment(max_trials=2))


def laughs() -> str:
    """A bounded "billion laughs" under the trial template's annotations."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    doc = experiment(max_trials=2)
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {"annotations": {"x": "PLACEHOLDER"}}
    body = yaml.safe_dump(doc).replace("x: PLACEHOLDER", "x: *a7")
    return "\n".join(["anchors:"] + ["  " + line for line in lines]) + "\n" + body


HOSTILE = {
    "not utf-8": (b"apiVersion: kubeflow.org/v1beta1\nkind: \xff\xfe\n", "not UTF-8 text"),
    "binary": (os.urandom(4096), "not UTF-8 text"),
    # libyaml's scanner refuses flow nesting past 1,000 before any event reaches nasflow
    "100,000 nested brackets": (b"a: " + b"[" * 100_000, "exceeded maximum nesting depth"),
    "200 nested brackets": (b"a: " + b"[" * 200, "nested deeper than 64 levels"),
    "2,000 nested keys": (b"a: " + b"{k: " * 2000, "nested deeper than 64 levels"),
    "100 nested block keys": ("".join(f"{' ' * i}k{i}:\n" for i in range(100)).encode(),
                              "nested deeper than 64 levels"),
    "5 MB unclosed flow sequence": (b"a: [" + b"1, " * 1_700_000, "Kubernetes keeps objects of "
                                                                 "at most 1.5 MiB"),
    "billion laughs": (laughs().encode(), "expands to more than 200,000 values"),
    "duplicate key": (VALID.replace("maxTrialCount: 2", "maxTrialCount: 2\n  maxTrialCount: 3")
                      .encode(), "spec.maxTrialCount: duplicate key 'maxTrialCount'"),
    "the same experiment twice": ((VALID + "---\n" + VALID).encode(),
                                  "metadata.name: experiment 'fake' is already defined in"),
    "negative activeDeadlineSeconds": (
        yaml.safe_dump(experiment(max_trials=2, deadline=-5)).encode(),
        "spec.trialTemplate.trialSpec.spec.activeDeadlineSeconds: must be >= 0, got -5"),
    "maxTrialCount beyond int32": (VALID.replace("maxTrialCount: 2",
                                                 f"maxTrialCount: {10**30}").encode(),
                                   f"spec.maxTrialCount: {10**30} does not fit Katib's int32"),
    "NaN goal": (VALID.replace("objectiveMetricName: score",
                               "objectiveMetricName: score\n    goal: .nan").encode(),
                 "spec.objective.goal: must be a finite number"),
}


def spaced(x: dict | None = None, algorithm: str = "random", label: str | None = None,
           **spec) -> bytes:
    """The fake experiment with parameter x's feasible space changed (issue 21 findings 2-4)."""
    doc = experiment(max_trials=2, algorithm=algorithm)
    doc["spec"]["parameters"][0]["feasibleSpace"].update(x or {})
    doc["spec"].update(spec)
    if label is not None:
        doc["spec"]["trialTemplate"]["trialSpec"]["metadata"] = {
            "labels": {"katib.kubeflow.org/experiment": label}}
    return yaml.safe_dump(doc).encode()


# Issue 21: numbers whose size or value the engine used to list, overflow on or accept.
HOSTILE.update({
    "int range to 1e26": (
        yaml.safe_dump(experiment(max_trials=2, params=[
            {"name": "x", "parameterType": "int",
             "feasibleSpace": {"min": "0", "max": "99999999999999999999999999"}}])).encode(),
        "spec.parameters[0].feasibleSpace.max: '99999999999999999999999999' must be between "
        f"-{2**53} and {2**53}"),
    "grid with a step of 1e-300": (
        spaced({"step": "1e-300"}, algorithm="grid"),
        "spec.parameters: grid lists every combination: 6e+300 is more than 200,000"),
    "NaN min": (spaced({"min": "nan"}), "spec.parameters[0].feasibleSpace.min: 'nan' must be "
                                        "a finite number"),
    "-inf to inf": (spaced({"min": "-inf", "max": "inf"}),
                    "spec.parameters[0].feasibleSpace.max: 'inf' must be a finite number"),
    "NaN step": (spaced({"step": "nan"}), "feasibleSpace.step: 'nan' must be a finite number"),
    "NaN setting": (spaced(algorithm="tpe", algorithm_settings=None) .replace(
        b"algorithmSettings: []", b"algorithmSettings: [{name: gamma, value: nan}]"),
        "gamma must be a finite number"),
    "a seed past numpy's": (spaced().replace(
        b"algorithmSettings: []", b"algorithmSettings: [{name: random_state, value: '"
        + str(2**40).encode() + b"'}]"), "random_state must be <= 4294967295"),
    "copied manifest, renamed": (spaced(label="the-original"), (
        "spec.trialTemplate.trialSpec.metadata.labels[katib.kubeflow.org/experiment]: is "
        "'the-original' but metadata.name is 'fake': set it to 'fake'")),
})


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_manifest_is_refused_quickly_in_one_line(case, tmp_path, capsys):
    data, message = HOSTILE[case]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(data)
    for command in (["validate", str(path)],
                    ["run", str(path), "--no-mlflow", "--workdir", str(tmp_path / "w")]):
        started = time.monotonic()
        assert main(command) == 2
        assert time.monotonic() - started < 1.0, command
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert message in text and "Traceback" not in text, text
    assert not (tmp_path / "w").exists()  # nothing started


def test_an_internal_error_is_one_line_and_a_trace_in_the_workdir(tmp_path, capsys,
                                                                  monkeypatch):
    import pipeline.engine.experiment as engine_module

    def broken(self):
        raise RuntimeError("something no one expected")

    monkeypatch.setattr(engine_module.ExperimentEngine, "run", broken)
    path = write(experiment(max_trials=1, parallel=1), tmp_path)
    assert main(["run", str(path), "--no-mlflow", "--workdir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    log = tmp_path / "w" / "nasflow.log"
    assert one_line(err) == ("nasflow run: internal error: RuntimeError: something no one "
                             f"expected (the full trace is in {log})")
    assert "Traceback" in log.read_text() and "something no one expected" in log.read_text()


# ---- 8. a trial whose parent dies ends its run KILLED -------------------------------------------

def children(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().split()[3] == str(parent):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_katib_sh_wrapper_killed_ends_the_trials_run_killed(mlflow_server, tmp_path):
    """Katib's StdOut collector runs `sh -c "<command> 1>metrics.log 2>&1 && echo completed"`;
    Kubernetes' SIGTERM (deadline, deletion) goes to sh, which dies without passing it on."""
    from mlflow import MlflowClient

    command = (f"{sys.executable} -m trial_image --epochs=200 --patience=200 --filters=8 "
               "--trial-name=wrapped --experiment-name=wrapped "
               f"1>{tmp_path}/metrics.log 2>&1 && echo completed > {tmp_path}/done.pid")
    shell = subprocess.Popen(["sh", "-c", command], cwd=tmp_path, start_new_session=True,
                             env={**ENV, "MLFLOW_TRACKING_URI": mlflow_server.uri})
    log = tmp_path / "metrics.log"
    deadline = time.monotonic() + 120
    while "Validation-Accuracy" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline and shell.poll() is None
        time.sleep(0.2)
    trial_pid = next(pid for pid in children(shell.pid))
    os.kill(shell.pid, signal.SIGTERM)  # what Kubernetes does to the container's process
    shell.wait(timeout=30)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{trial_pid}").exists():
        assert time.monotonic() < deadline, "the trial outlived its parent"
        time.sleep(0.2)
    client = MlflowClient(mlflow_server.uri)
    experiment_id = client.get_experiment_by_name("wrapped").experiment_id
    (trial_run,) = client.search_runs([experiment_id], "tags.`katib.trial` = 'wrapped'")
    assert trial_run.info.status == "KILLED"
    assert "terminated by signal 15" in trial_run.data.tags["nasflow.failure_reason"]
    assert not (tmp_path / "done.pid").exists()


def test_a_sigterm_whose_exception_a_finaliser_dropped_still_stops_the_trial():
    """Python may run the handler inside a ``__del__`` (TensorFlow has many), which prints and
    drops the exception: the CI once saw a killed trial train on to FINISHED that way."""
    script = """
import os, signal, sys, time
from trial_image import termination
from trial_image.training import _Termination
termination.raise_on_sigterm()
class Finalised:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.1)
Finalised()
print("dropped", flush=True)
try:
    _Termination().on_train_batch_end(0)
except termination.Terminated as exc:
    print("raised:", exc, flush=True)
    sys.exit(exc.exit_code)
"""
    done = subprocess.run([sys.executable, "-c", script], env=ENV, capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.splitlines() == ["dropped", "raised: terminated by signal 15"]
    assert "Exception ignored" in done.stderr
    assert done.returncode == 143
