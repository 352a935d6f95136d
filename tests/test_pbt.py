"""Population-based training on the embedded engine: the exploit/explore rule on fake trials
whose score carries over through their checkpoint folders, and the trial image on digits
continuing another member's checkpoint with perturbed hyperparameters (resume after kill -9:
tests/test_engine.py)."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from tests.conftest import ROOT
from tests.test_engine import PBT, experiment, reason, run


def test_members_exploit_the_best_and_explore_their_hyperparameters(tmp_path):
    doc = experiment(algorithm="pbt", max_trials=15, parallel=3, settings=PBT,
                     extra_args=["--epochs=2", "--checkpoint-dir=/var/log/katib/checkpoints/"])
    status, engine = run(doc, tmp_path)
    assert reason(status) == ("Succeeded", "ExperimentMaxTrialsReached")
    trials = engine.trials
    folder = tmp_path / ".nasflow" / "fake" / "checkpoints"

    def state(t):
        return json.loads((folder / t.name / "state.json").read_text())

    def score(t):
        return float(t.observations["score"][-1])

    exploited = 0
    for generation in (1, 2):
        previous = trials[(generation - 1) * 5:generation * 5]
        ranked = sorted(previous, key=score, reverse=True)
        top, bottom = ranked[:2], ranked[-2:]
        for member, t in enumerate(trials[generation * 5:(generation + 1) * 5]):
            own = previous[member]
            parent_name = state(t)["lineage"][-1]
            parent = next(p for p in previous if p.name == parent_name)
            # the score goes on from the parent's checkpoint: first epoch = its level + half
            gain = 1 - (float(t.assignments["x"]) - 0.5) ** 2 - 0.01 * int(t.assignments["y"])
            assert float(t.observations["score"][0]) == pytest.approx(
                score(parent) + gain / 2, abs=2e-6)
            if own in bottom:  # exploit a top member, explore its hyperparameters
                exploited += 1
                assert parent in top
                x, parent_x = float(t.assignments["x"]), float(parent.assignments["x"])
                assert any(math.isclose(x, min(max(parent_x * f, 0), 1)) for f in (0.8, 1.2))
                y, parent_y = int(t.assignments["y"]), int(parent.assignments["y"])
                assert y in {min(max(int(parent_y * f), 0), 5) for f in (0.8, 1.2)}
            else:  # go on with its own checkpoint and hyperparameters
                assert parent is own and t.assignments == own.assignments
    assert exploited == 4
    # a generation starts only once the previous one has finished
    for g in (1, 2):
        last_end = max(t.finished for t in trials[(g - 1) * 5:g * 5])
        assert min(t.started for t in trials[g * 5:(g + 1) * 5]) >= last_end


@pytest.mark.slow
def test_pbt_on_digits_continues_a_better_members_checkpoint(tmp_path):
    """pbt-digits.yaml on the embedded engine, made small: 5 members, 2 generations of 1 epoch.
    The exploiting members start from a better member's weights (epoch 1) with its learning
    rate × 0.8 or × 1.2, and their checkpoints say so."""
    doc = yaml.safe_load((ROOT / "manifests/experiments/pbt-digits.yaml").read_text())
    doc["spec"]["maxTrialCount"] = 10
    settings = {s["name"]: s for s in doc["spec"]["algorithm"]["algorithmSettings"]}
    settings["n_population"]["value"], settings["truncation_threshold"]["value"] = "5", "0.2"
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["command"] = [a.replace("--epochs=3", "--epochs=1") for a in container["command"]]
    status, engine = run(doc, tmp_path)
    assert status["trialsSucceeded"] == 10, [t.message for t in engine.trials]
    folder = tmp_path / ".nasflow" / "pbt-digits" / "checkpoints"
    trials = engine.trials
    accuracy = {t.name: float(t.observations["Validation-Accuracy"][-1]) for t in trials}
    first = trials[:5]
    worst = min(first, key=lambda t: (accuracy[t.name], -t.index))
    for member, t in enumerate(trials[5:]):
        checkpoint = json.loads((folder / t.name / "latest.json").read_text())
        assert checkpoint["epoch"] == 2 and checkpoint["finished"]
        assert len(checkpoint["history"]) == 1  # one epoch of its own
        if first[member] is worst:
            best = max(first, key=lambda m: (accuracy[m.name], -m.index))
            assert checkpoint["lineage"] == [best.name]
            rate, parent_rate = (float(t.assignments["learning_rate"]),
                                 float(best.assignments["learning_rate"]))
            assert any(math.isclose(rate, parent_rate * f) for f in (0.8, 1.2))
        else:
            assert checkpoint["lineage"] == [first[member].name]
            assert t.assignments == first[member].assignments


@pytest.mark.parametrize("path", ["/", "checkpoints", "/var/../etc"])
def test_the_trial_folder_must_be_an_absolute_folder(path):
    from pipeline.validation import validate

    settings = [{**s, "value": path} if s["name"] == "suggestion_trial_dir" else s for s in PBT]
    _, problems = validate("pbt.yaml", experiment(algorithm="pbt", settings=settings))
    assert [str(p) for p in problems] == [
        f"spec.algorithm.algorithmSettings: suggestion_trial_dir {path!r} must be an absolute "
        "folder of the trial's container, not / and without '..'"]


def test_the_volume_replaces_the_path_as_a_whole_path(tmp_path):
    from pipeline.engine.template import TrialCommand
    from pipeline.engine.trial_volume import TrialVolume

    volume = TrialVolume("/ckpt", tmp_path)
    command = volume.mount(TrialCommand(
        ["--checkpoint-dir=/ckpt/", "--other=/ckpts", "/ckpt", "--log=/some/where/ckpt",
         "--logs=/var/ckpt/x"], {"DIR": "/ckpt/sub", "SEARCH": "/opt:/ckpt:/usr"}, None), "t1")
    mount = str((tmp_path / "t1").resolve())
    # whole components only: a path that merely ends in (or holds) /ckpt is left alone
    assert command.argv == [f"--checkpoint-dir={mount}/", "--other=/ckpts", mount,
                            "--log=/some/where/ckpt", "--logs=/var/ckpt/x"]
    assert command.env == {"DIR": f"{mount}/sub", "SEARCH": f"/opt:{mount}:/usr"}
