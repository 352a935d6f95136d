"""Early stopping: Katib's rule semantics, ASHA's decisions against Optuna's successive-halving
pruner, its settings' validation, and ASHA on the embedded engine."""

from __future__ import annotations

import os
import signal

import numpy as np
import optuna
import pytest

from pipeline.early_stopping.asha import ASHA
from pipeline.early_stopping.base import Curve, Rule
from pipeline.early_stopping.medianstop import MedianStop
from pipeline.engine.state import StateStore
from pipeline.validation import validate
from tests.test_engine import (
    _nasflow,
    _wait_for,
    _write,
    experiment,
    reason,
    run,
    trials_so_far,
)


def test_a_rule_is_met_once_the_best_so_far_compares_at_or_after_its_start_step():
    rule = Rule("acc", 0.5, "less", 3)
    assert not rule.met([0.1, 0.2], maximize=True)  # before the start step
    assert rule.met([0.1, 0.2, 0.3], maximize=True)
    assert not rule.met([0.1, 0.6, 0.3], maximize=True)  # the best so far is compared
    assert rule.met([0.1, 0.2, 0.3, 0.9], maximize=True)  # met at step 3 stays met
    assert Rule("loss", 0.5, "greater", 2).met([0.7, 0.6], maximize=False)
    assert not Rule("loss", 0.5, "greater", 2).met([0.7, 0.4], maximize=False)


def test_medianstop_is_katibs_mean_of_the_first_values():
    stop = MedianStop({"min_trials_required": "2", "start_step": "2"}, "acc", True)
    done = [Curve("a", "Succeeded", (0.2, 0.4, 0.9)), Curve("b", "Succeeded", (0.6, 0.8))]
    assert stop.rules(done[:1]) == []
    assert stop.rules([*done, Curve("c", "Failed", (0.0, 0.0))]) == [
        Rule("acc", pytest.approx(0.5), "less", 2)]


def test_asha_rungs_and_thresholds():
    asha = ASHA({"min_resource": "2", "reduction_factor": "3", "max_resource": "20"}, "acc", True)
    assert asha.rungs(100) == [2, 6, 18]
    assert asha.rungs(5) == [2]
    others = [Curve(str(i), "Succeeded", (v, v)) for i, v in enumerate([0.1, 0.9, 0.5, 0.7, 0.3])]
    # 5 others and the trial: 6 // 3 = 2 places, so the 2nd best (0.7) is the bar
    assert asha.threshold(2, others) == 0.7
    assert asha.threshold(6, others) is None  # nobody got there
    assert asha.threshold(2, others[:1]) == 0.1  # fewer than eta: beat everyone
    assert asha.rules(others) == [Rule("acc", 0.7, "less", 2)]
    minimize = ASHA({}, "loss", False)
    assert minimize.rules([Curve("a", "Succeeded", (0.4,))]) == [Rule("loss", 0.4, "greater", 1)]


def curves(seed: int, trials: int, epochs: int) -> list[list[float]]:
    """Rising learning curves with different ceilings and speeds."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(trials):
        ceiling, speed = rng.uniform(0.3, 1.0), rng.uniform(0.1, 1.0)
        out.append([float(ceiling * (1 - np.exp(-speed * (e + 1)))) for e in range(epochs)])
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_asha_stops_the_trials_optunas_successive_halving_prunes(seed):
    """Trials one after another (each sees every earlier one, as with parallelTrialCount 1): the
    trials ASHA stops, and the epoch each stops at, are those Optuna's SuccessiveHalvingPruner
    (bootstrap_count 0) prunes. Rising curves: the best so far is the latest value. No
    max_resource: Optuna's rungs go on to the last epoch."""
    epochs, eta = 27, 3
    learning = curves(seed, 40, epochs)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(
        min_resource=1, reduction_factor=eta, min_early_stopping_rate=0))
    theirs = []
    for curve in learning:
        trial = study.ask()
        for epoch, value in enumerate(curve, 1):
            trial.report(value, epoch)
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                theirs.append(epoch)
                break
        else:
            study.tell(trial, curve[-1])
            theirs.append(None)
    asha = ASHA({"min_resource": "1", "reduction_factor": str(eta)}, "acc", True)
    seen: list[Curve] = []
    ours = []
    for i, curve in enumerate(learning):
        stopped = None
        for epoch in range(1, epochs + 1):
            if asha.judge(Curve(str(i), "Running", tuple(curve[:epoch])), [], seen):
                stopped = epoch
                break
        ours.append(stopped)
        seen.append(Curve(str(i), "EarlyStopped" if stopped else "Succeeded",
                          tuple(curve[:stopped or epochs])))
    assert ours == theirs
    assert 0 < sum(s is not None for s in ours) < len(ours)


@pytest.mark.parametrize("settings, field, message", [
    ([{"name": "reduction_factor", "value": "1"}], "algorithmSettings[0].value",
     "reduction_factor must be >= 2"),
    ([{"name": "min_resource", "value": "x"}], "algorithmSettings[0].value",
     "min_resource must be an integer"),
    ([{"name": "min_resource", "value": "٣"}], "algorithmSettings[0].value",  # Arabic-Indic 3
     "min_resource must be an integer (ASCII digits)"),
    ([{"name": "grace", "value": "1"}], "algorithmSettings[0].name", "unknown setting 'grace'"),
    ([{"name": "min_resource", "value": "4"}, {"name": "max_resource", "value": "4"}],
     "algorithmSettings", "max_resource 4 leaves no rung"),
])
def test_asha_settings_are_checked_naming_the_field(settings, field, message):
    doc = experiment(spec={"earlyStopping": {"algorithmName": "asha",
                                             "algorithmSettings": settings}})
    _, problems = validate("test.yaml", doc)
    assert [str(p) for p in problems if field in p.path and message in p.message], problems


def test_an_unknown_early_stopping_algorithm_is_named():
    doc = experiment(spec={"earlyStopping": {"algorithmName": "hyperband"}})
    _, problems = validate("test.yaml", doc)
    assert [p.path for p in problems] == ["spec.earlyStopping.algorithmName"]
    assert "must be one of medianstop, asha, not 'hyperband'" in problems[0].message


def expected_stops(trials, eta: int, epochs: int) -> list[bool]:
    """ASHA's decisions recomputed from the recorded curves, each trial against the earlier
    ones (parallelTrialCount 1)."""
    out = []
    for i, t in enumerate(trials):
        curve = [float(v) for v in t.observations["score"]]
        earlier = [[float(v) for v in e.observations["score"]] for e in trials[:i]]
        stop = False
        rung = 1
        while rung <= len(curve) and rung < epochs:
            there = sorted((max(c[:rung]) for c in earlier if len(c) >= rung), reverse=True)
            keep = max(1, (len(there) + 1) // eta)
            if len(there) >= keep and max(curve[:rung]) < there[keep - 1]:
                stop = True
            rung *= eta
        out.append(stop)
    return out


def asha_experiment() -> dict:
    """8 fake trials of 8 epochs one after another, ASHA with rungs at 1, 2 and 4 epochs."""
    early = {"algorithmName": "asha", "algorithmSettings": [
        {"name": "min_resource", "value": "1"}, {"name": "reduction_factor", "value": "2"},
        {"name": "max_resource", "value": "8"}]}
    return experiment(max_trials=8, parallel=1, extra_args=["--epochs=8", "--sleep=0.15"],
                      spec={"earlyStopping": early})


def test_asha_on_the_embedded_engine(tmp_path):
    status, engine = run(asha_experiment(), tmp_path)
    stopped = [t.status == "EarlyStopped" for t in engine.trials]
    assert stopped == expected_stops(engine.trials, eta=2, epochs=8)
    assert 0 < sum(stopped) < len(stopped)
    for t in engine.trials:
        if t.status == "EarlyStopped":
            assert t.reason == "TrialEarlyStopped" and t.message.startswith("asha: score ")
            assert len(t.observations["score"]) < 8
    assert status["trialsEarlyStopped"] == sum(stopped)
    assert status["trialsSucceeded"] + status["trialsEarlyStopped"] == 8
    assert reason(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    # the Katib rule each trial was created with: the first rung's bar from the trials before
    assert engine.trials[0].rules == []
    assert all(t.rules and t.rules[0]["start_step"] == 1 for t in engine.trials[1:])


def test_kill_9_then_resume_stops_the_trials_the_uninterrupted_search_stops(tmp_path):
    """ASHA one trial at a time (each judged against the finished ones): kill -9 of the engine
    mid-search, --resume, and the same trials end the same way as without the kill (a stopped
    trial's last values depend on when the engine looked, so only succeeded curves compare)."""
    doc = asha_experiment()
    (tmp_path / "cut").mkdir()
    path = _write(doc, tmp_path / "cut")
    db = tmp_path / "cut" / ".nasflow" / "fake" / "state.db"
    engine = _nasflow("run", str(path), "--no-mlflow", "--quiet", cwd=tmp_path / "cut")
    _wait_for(lambda: sum(t.done for t in trials_so_far(db)) >= 3)
    os.kill(engine.pid, signal.SIGKILL)
    engine.wait()
    resumed = _nasflow("run", str(path), "--no-mlflow", "--quiet", "--resume",
                       cwd=tmp_path / "cut")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    after = StateStore(db).trials()
    (tmp_path / "whole").mkdir()
    _, whole = run(asha_experiment(), tmp_path / "whole")

    def outcome(trials):
        return [(t.name, t.assignments, t.status,
                 t.observations if t.status == "Succeeded" else None) for t in trials]
    assert outcome(after) == outcome(whole.trials)
    assert any(t.status == "EarlyStopped" for t in after)
