"""Engine semantics with a tiny fake trial (a Python script printing metrics): fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline.engine.experiment import EngineError, EngineOptions, ExperimentEngine
from pipeline.engine.state import StateError, StateStore
from pipeline.katib.manifest import Manifest
from pipeline.validation import validate
from tests.conftest import ROOT

FAKE = str(ROOT / "tests" / "fake_trial.py")


def experiment(name="fake", algorithm="random", max_trials=6, parallel=2, max_failed=None,
               params=None, extra_args=(), spec=None, settings=None, goal=None, deadline=None):
    params = params or [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "y", "parameterType": "int", "feasibleSpace": {"min": "0", "max": "5"}},
    ]
    job = {"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "restartPolicy": "Never",
        "containers": [{"name": "main", "image": "none",
                        "command": ["python", FAKE,
                                    *[f"--{p['name']}=${{trialParameters.{p['name']}}}"
                                      for p in params], *extra_args]}]}}}}
    if deadline:
        job["spec"]["activeDeadlineSeconds"] = deadline
    doc = {"apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
           "metadata": {"name": name},
           "spec": {"objective": {"type": "maximize", "objectiveMetricName": "score",
                                  "additionalMetricNames": ["loss"]},
                    "algorithm": {"algorithmName": algorithm,
                                  "algorithmSettings": settings or []},
                    "parallelTrialCount": parallel, "maxTrialCount": max_trials,
                    "parameters": params,
                    "trialTemplate": {"primaryContainerName": "main",
                                      "trialParameters": [{"name": p["name"],
                                                           "reference": p["name"]}
                                                          for p in params],
                                      "trialSpec": job}}}
    if max_failed is not None:
        doc["spec"]["maxFailedTrialCount"] = max_failed
    if goal is not None:
        doc["spec"]["objective"]["goal"] = goal
    doc["spec"].update(spec or {})
    return doc


def run(doc, tmp_path, **options):
    exp, problems = validate("test.yaml", doc)
    assert problems == []
    engine = ExperimentEngine(Manifest("test.yaml", doc, exp),
                              EngineOptions(workdir=tmp_path / ".nasflow", cwd=tmp_path,
                                            **options))
    return engine.run(), engine


def reason(status):
    return status["conditions"][-1]["type"], status["conditions"][-1]["reason"]


def test_max_trials_reached_and_optimal_trial(tmp_path):
    status, engine = run(experiment(max_trials=6), tmp_path)
    assert reason(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert status["trials"] == status["trialsSucceeded"] == 6
    values = {t.name: max(map(float, t.observations["score"])) for t in engine.trials}
    best = status["currentOptimalTrial"]
    assert best["bestTrialName"] == max(values, key=values.get)
    score = next(m for m in best["observation"]["metrics"] if m["name"] == "score")
    assert float(score["max"]) == pytest.approx(max(values.values()))
    # the objective strategy for maximize is max; every epoch line was collected in order
    assert all(len(t.observations["score"]) == 4 for t in engine.trials)
    x = float(next(a["value"] for a in best["parameterAssignments"] if a["name"] == "x"))
    y = int(next(a["value"] for a in best["parameterAssignments"] if a["name"] == "y"))
    assert float(score["max"]) == pytest.approx(1 - (x - 0.5) ** 2 - 0.01 * y, abs=1e-5)


def test_goal_reached_stops_the_search(tmp_path):
    status, _ = run(experiment(max_trials=50, parallel=1, goal=0.5), tmp_path)
    assert reason(status) == ("Succeeded", "ExperimentGoalReached")
    assert status["trials"] < 50


def test_failed_trials_fail_the_experiment(tmp_path):
    params = [{"name": "fail", "parameterType": "categorical", "feasibleSpace": {"list": ["yes"]}},
              {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}]
    status, engine = run(experiment(params=params, max_trials=6, max_failed=2, parallel=1),
                         tmp_path)
    assert reason(status) == ("Failed", "ExperimentFailed")
    assert status["trialsFailed"] == 2  # Katib fails the experiment at maxFailedTrialCount
    assert engine.trials[0].reason == "TrialFailed"
    assert engine.trials[0].message == "exit code 3: something broke"


def test_a_search_whose_every_trial_failed_exits_1(tmp_path, capsys):
    """Without maxFailedTrialCount Katib ends it Succeeded (MaxTrialsReached), with no optimal
    trial: nasflow run says so and exits 1, not 0."""
    import yaml

    from pipeline.cli import main

    params = [{"name": "fail", "parameterType": "categorical", "feasibleSpace": {"list": ["yes"]}},
              {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}]
    path = tmp_path / "failing.yaml"
    path.write_text(yaml.safe_dump(experiment(params=params, max_trials=3, max_failed=None,
                                              parallel=1)))
    assert main(["run", str(path), "--no-mlflow", "--workdir", str(tmp_path / ".nasflow"),
                 "--cold-trials"]) == 1
    out = capsys.readouterr().out
    assert "Succeeded (ExperimentMaxTrialsReached" in out and "3 failed" in out
    assert "no trial reported the objective" in out


def test_metrics_unavailable(tmp_path):
    status, engine = run(experiment(max_trials=2, extra_args=["--no-metric"]), tmp_path)
    assert status["trialMetricsUnavailable"] == 2
    assert engine.trials[0].status == "MetricsUnavailable"
    assert status["currentOptimalTrial"] is None


def test_parallel_trial_count_is_respected(tmp_path):
    run(experiment(max_trials=6, parallel=3, extra_args=["--sleep=0.15"]), tmp_path)
    trials = StateStore(tmp_path / ".nasflow" / "fake" / "state.db").trials()
    events = sorted([(t.started, 1) for t in trials] + [(t.finished, -1) for t in trials])
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    assert peak == 3


def test_active_deadline_fails_the_trial(tmp_path):
    _status, engine = run(experiment(max_trials=1, parallel=1, extra_args=["--sleep=5"],
                                    deadline=1), tmp_path)
    assert engine.trials[0].status == "Failed"
    assert engine.trials[0].reason == "DeadlineExceeded"
    assert engine.trials[0].finished - engine.trials[0].started < 4


@pytest.mark.parametrize("fmt", ["TEXT", "JSON"])
def test_file_collector(tmp_path, fmt):
    collector = {"collector": {"kind": "File"},
                 "source": {"fileSystemPath": {"path": "/var/log/train/metrics.txt",
                                               "kind": "File", "format": fmt}}}
    doc = experiment(max_trials=2, extra_args=["--file=/var/log/train/metrics.txt",
                                               f"--format={fmt}"],
                     spec={"metricsCollectorSpec": collector})
    status, engine = run(doc, tmp_path)
    assert status["trialsSucceeded"] == 2
    # the absolute path was mapped into each trial's own directory, as a pod's filesystem
    t = engine.trials[0]
    assert (tmp_path / ".nasflow/fake/trials" / t.name / "fs/var/log/train/metrics.txt").exists()
    assert len(t.observations["score"]) == 4


def test_custom_filter_and_latest_strategy(tmp_path):
    spec = {"metricsCollectorSpec": {"collector": {"kind": "StdOut"}, "source": {"filter": {
        "metricsFormat": [r"(score)=([\d.]+)"]}}},
            "objective": {"type": "maximize", "objectiveMetricName": "score",
                          "metricStrategies": [{"name": "score", "value": "min"}]}}
    _status, engine = run(experiment(max_trials=2, spec=spec), tmp_path)
    t = engine.trials[0]
    assert "loss" not in t.observations  # the custom filter only captures score
    assert engine.scoring.value(t) == pytest.approx(min(map(float, t.observations["score"])))


def test_median_stop(tmp_path):
    # x=0.5 scores 1.0 at the end, x=-1 scores -1.25: once 2 trials succeeded, the rule (mean of
    # their first 2 values) stops every later x=-1 trial after its 2nd report.
    params = [{"name": "x", "parameterType": "categorical",
               "feasibleSpace": {"list": ["0.5", "-1"]}},
              {"name": "y", "parameterType": "double",
               "feasibleSpace": {"min": "0", "max": "0.01"}}]
    early = {"algorithmName": "medianstop", "algorithmSettings": [
        {"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}]}
    doc = experiment(params=params, max_trials=8, parallel=1,
                     extra_args=["--epochs=8", "--sleep=0.25"], spec={"earlyStopping": early})
    status, engine = run(doc, tmp_path)
    ruled = [t for t in engine.trials if t.rules]
    assert ruled and all([r["comparison"] for r in t.rules] == ["less"] for t in ruled)
    bad = [t for t in ruled if t.assignments["x"] == "-1"]
    assert bad, "seed 0 draws at least one bad trial after the rule exists"
    assert all(t.status == "EarlyStopped" and len(t.observations["score"]) < 8 for t in bad)
    assert all(t.status == "Succeeded" for t in engine.trials if t.assignments["x"] == "0.5")
    assert status["trialsEarlyStopped"] == len(bad)
    assert reason(status) == ("Succeeded", "ExperimentMaxTrialsReached")


def test_injection_arrives_as_one_literal_argument(tmp_path):
    nasty = 'x;touch pwned $(touch pwned) `touch pwned` "q" \'s\'\nline2'
    params = [{"name": "v", "parameterType": "categorical", "feasibleSpace": {"list": [nasty]}}]
    doc = experiment(params=params, algorithm="grid", max_trials=1, parallel=1,
                     extra_args=["--echo-args=echo.json", "--me=${trialParameters.me}"])
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "me", "reference": "${trialSpec.Name}"})
    _, engine = run(doc, tmp_path)
    echoed = json.loads((tmp_path / "echo.json").read_text())
    assert echoed["argv"][0] == f"--v={nasty}"
    assert echoed["argv"][-1] == f"--me={engine.trials[0].name}"
    assert echoed["env"]["KATIB_TRIAL_NAME"] == engine.trials[0].name
    assert not (tmp_path / "pwned").exists()


def test_same_seed_same_search_with_parallel_trials(tmp_path):
    # trial durations depend on x, so trials finish in a different order than they started
    doc = experiment(algorithm="tpe", max_trials=10, parallel=3, extra_args=["--sleep=0.02"],
                     settings=[{"name": "n_EI_candidates", "value": "8"}])
    doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "command"].append("--epochs=${trialParameters.y}")
    _first, e1 = run(doc, tmp_path / "a", seed=3)
    _second, e2 = run(doc, tmp_path / "b", seed=3)
    _third, e3 = run(doc, tmp_path / "c", seed=4)
    assert [t.assignments for t in e1.trials] == [t.assignments for t in e2.trials]
    assert [t.assignments for t in e1.trials] != [t.assignments for t in e3.trials]


def test_existing_state_needs_resume(tmp_path):
    run(experiment(max_trials=2), tmp_path)
    with pytest.raises(EngineError, match="--resume"):
        run(experiment(max_trials=2), tmp_path)
    status, _ = run(experiment(max_trials=3), tmp_path, resume=True)  # budget raised
    assert status["trials"] == 3
    with pytest.raises(EngineError, match="changed since the run started"):
        run(experiment(max_trials=3, algorithm="tpe"), tmp_path, resume=True)


def _write(doc, tmp_path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _nasflow(*args, cwd) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pipeline", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


PBT = [{"name": "n_population", "value": "5"}, {"name": "truncation_threshold", "value": "0.4"},
       {"name": "suggestion_trial_dir", "value": "/var/log/katib/checkpoints"}]


@pytest.mark.parametrize("algorithm", ["random", "tpe", "evolution", "pbt"])
def test_kill_9_then_resume_is_the_uninterrupted_search(tmp_path, algorithm):
    """kill -9 after some trials finished, two running: --resume never reruns a finished trial,
    runs the two interrupted ones again, and ends with exactly the trials, assignments and
    results of the same search run without interruption (PBT: its members' checkpoints too)."""
    # every trial appends its name to starts.log when it starts
    pbt = algorithm == "pbt"
    doc = experiment(algorithm=algorithm, max_trials=12, parallel=2, settings=PBT if pbt else None,
                     extra_args=["--sleep=0.1", "--echo-args=/dev/null",
                                 *(["--checkpoint-dir=/var/log/katib/checkpoints/"] if pbt
                                   else [])])
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["command"] = ["python", "-c",
                            "import os,runpy,sys; open('starts.log','a').write("
                            "os.environ['KATIB_TRIAL_NAME']+'\\n'); sys.argv=sys.argv[1:]; "
                            f"runpy.run_path({FAKE!r}, run_name='__main__')",
                            *container["command"][1:]]
    (tmp_path / "cut").mkdir()
    path = _write(doc, tmp_path / "cut")
    db = tmp_path / "cut" / ".nasflow" / "fake" / "state.db"
    engine = _nasflow("run", str(path), "--no-mlflow", "--quiet", cwd=tmp_path / "cut")

    def some_finished_some_running():
        trials = trials_so_far(db)
        return sum(t.done for t in trials) >= 4 and any(not t.done for t in trials)
    _wait_for(some_finished_some_running)
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    before = StateStore(db).trials()
    finished_before = {t.name for t in before if t.done}
    interrupted = {t.name for t in before if not t.done}
    assert finished_before and interrupted and len(before) < 12

    resumed = _nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume", "--output",
                       "json", cwd=tmp_path / "cut")
    out, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    status = json.loads(out)
    assert status["trials"] == status["trialsSucceeded"] == 12
    assert [c["type"] for c in status["conditions"]] == ["Created", "Running", "Succeeded"]
    after = StateStore(db).trials()
    starts = (tmp_path / "cut" / "starts.log").read_text().split()
    assert all(starts.count(name) == 1 for name in finished_before)
    assert all(starts.count(name) == 2 for name in interrupted)  # killed, then run again

    (tmp_path / "whole").mkdir()
    whole = _nasflow("run", str(_write(doc, tmp_path / "whole")), "--no-mlflow", "--quiet",
                     cwd=tmp_path / "whole")
    assert whole.wait(timeout=120) == 0
    uninterrupted = StateStore(tmp_path / "whole" / ".nasflow" / "fake" / "state.db").trials()
    assert [(t.name, t.assignments, t.status, t.observations) for t in after] == [
        (t.name, t.assignments, t.status, t.observations) for t in uninterrupted]


def trials_so_far(db: Path) -> list:
    """The trials a running engine has recorded; none while it is still creating the database
    (its file exists a moment before its tables do)."""
    try:
        return StateStore(db).trials() if db.exists() else []
    except StateError:
        return []


def test_ctrl_c_stops_cleanly_and_resumes(tmp_path):
    path = _write(experiment(max_trials=8, parallel=2, extra_args=["--sleep=0.5"]), tmp_path)
    engine = _nasflow("run", str(path), "--no-mlflow", "--quiet", "--output", "json",
                      cwd=tmp_path)
    db = tmp_path / ".nasflow" / "fake" / "state.db"
    _wait_for(lambda: len(trials_so_far(db)) >= 2)
    engine.send_signal(signal.SIGINT)
    out, _ = engine.communicate(timeout=60)
    assert engine.returncode == 130
    status = json.loads(out)
    assert status["conditions"][-1]["reason"] == "ExperimentInterrupted"
    assert status["trialsKilled"] >= 1 and status["trialsRunning"] == 0
    resumed = _nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume", cwd=tmp_path)
    resumed.communicate(timeout=120)
    assert resumed.returncode == 0
    trials = StateStore(db).trials()
    # the trials Ctrl-C stopped ran again: nothing of the search is lost
    assert len(trials) == 8 and {t.status for t in trials} == {"Succeeded"}


def test_run_names_settings_it_ignores(tmp_path, capsys):
    from pipeline.cli import main

    doc = experiment(algorithm="cmaes", max_trials=2, parallel=1,
                     settings=[{"name": "restart_strategy", "value": "ipop"}])
    assert main(["run", str(_write(doc, tmp_path)), "--no-mlflow", "--quiet", "--workdir",
                 str(tmp_path / ".nasflow")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == ["nasflow run: note: cmaes setting(s) restart_strategy=ipop (accepted for "
                   "Katib, ignored by nasflow run: Optuna's CmaEsSampler (>= 4.4) has no "
                   "restarts)"]


@pytest.mark.parametrize(("writes", "message"), [
    (["--no-metric"], "failed to open the file metrics.json"),
    (["--file=/var/log/train/metrics.json", "--format=TEXT"], "failed to parse the json object"),
], ids=["file-missing", "not-json"])
def test_a_collector_that_cannot_read_the_file_fails_the_trial(tmp_path, writes, message):
    """Katib's File collector fails the trial when its file is missing or not JSON lines; it is
    not MetricsUnavailable (which means: read, but no objective in it)."""
    collector = {"collector": {"kind": "File"},
                 "source": {"fileSystemPath": {"path": "/var/log/train/metrics.json",
                                               "kind": "File", "format": "JSON"}}}
    doc = experiment(max_trials=1, parallel=1, extra_args=writes,
                     spec={"metricsCollectorSpec": collector})
    status, engine = run(doc, tmp_path)
    (trial,) = engine.trials
    assert (trial.status, trial.reason) == ("Failed", "MetricsCollectorFailed")
    assert message in trial.message
    assert status["trialsFailed"] == 1 and status["trialMetricsUnavailable"] == 0


def test_the_progress_line_counts_every_running_trial(tmp_path):
    """Issue 21 finding 6: the line said "1 running" while two ran (it was reported after the
    first of them started). Every report now comes after launching: with 2 in parallel and
    trials left, 2 run."""
    reports = []
    run(experiment(max_trials=6, parallel=2, extra_args=["--sleep=0.3"]), tmp_path,
        on_progress=reports.append)
    while_trials_left = [r for r in reports if r["done"] <= 4]
    assert while_trials_left and {r["running"] for r in while_trials_left} == {2}
    assert reports[-1]["done"] == 6 and reports[-1]["running"] == 0
