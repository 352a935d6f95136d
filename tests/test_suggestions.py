"""One conformance suite every suggestion algorithm passes, then each algorithm's own promises."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from pipeline import search_space
from pipeline.suggestion import create
from pipeline.suggestion.base import WAIT, SearchContext, TrialResult
from pipeline.validation import validate
from tests.conftest import KATIB_DATA, ROOT, wire_example
from trial_image.frontends import enas as enas_frontend
from trial_image.spec import Head, Training

HP = yaml.safe_load("""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: conformance}
spec:
  objective: {type: maximize, objectiveMetricName: score}
  algorithm: {algorithmName: random}
  parallelTrialCount: 1
  maxTrialCount: 12
  parameters:
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.001", max: "0.1",
                                                         distribution: logUniform}}
    - {name: momentum, parameterType: double, feasibleSpace: {min: "0.5", max: "0.9", step: "0.1"}}
    - {name: layers, parameterType: int, feasibleSpace: {min: "1", max: "4"}}
    - {name: opt, parameterType: categorical, feasibleSpace: {list: [adam, sgd]}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: lr, reference: lr}
      - {name: momentum, reference: momentum}
      - {name: layers, reference: layers}
      - {name: opt, reference: opt}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [t, "${trialParameters.lr}", "${trialParameters.momentum}",
                          "${trialParameters.layers}", "${trialParameters.opt}"]
""")
ENAS = yaml.safe_load((ROOT / "manifests/experiments/enas-digits.yaml").read_text())
DARTS = yaml.safe_load((KATIB_DATA / "examples/nas/darts-cpu.yaml").read_text())


def hp_doc(algorithm: str, settings: list | None = None) -> dict:
    doc = copy.deepcopy(HP)
    doc["spec"]["algorithm"] = {"algorithmName": algorithm, "algorithmSettings": settings or []}
    if algorithm == "grid":
        doc["spec"]["parameters"][0] = {"name": "lr", "parameterType": "categorical",
                                        "feasibleSpace": {"list": ["0.01", "0.1"]}}
    if algorithm == "hyperband":
        doc["spec"]["parameters"].append({"name": "epochs", "parameterType": "int",
                                          "feasibleSpace": {"min": "1", "max": "9"}})
        doc["spec"]["parallelTrialCount"] = 9
        doc["spec"]["trialTemplate"]["trialParameters"].append(
            {"name": "epochs", "reference": "epochs"})
        doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
            "command"].append("${trialParameters.epochs}")
    return doc


def nas_doc(algorithm: str) -> dict:
    doc = copy.deepcopy(ENAS)
    if algorithm == "evolution":
        doc["spec"]["algorithm"] = {"algorithmName": "evolution", "algorithmSettings": [
            {"name": "population_size", "value": "4"}, {"name": "sample_size", "value": "2"}]}
    return doc


CASES = {
    "random": hp_doc("random"),
    "grid": hp_doc("grid"),
    "tpe": hp_doc("tpe", [{"name": "n_EI_candidates", "value": "8"}]),
    "multivariate-tpe": hp_doc("multivariate-tpe", [{"name": "n_startup_trials", "value": "3"}]),
    "cmaes": hp_doc("cmaes", [{"name": "sigma", "value": "0.3"}]),
    "sobol": hp_doc("sobol"),
    "bayesianoptimization": hp_doc("bayesianoptimization",
                                   [{"name": "n_initial_points", "value": "3"}]),
    "hyperband": hp_doc("hyperband", [{"name": "r_l", "value": "9"},
                                      {"name": "eta", "value": "3"},
                                      {"name": "resource_name", "value": "epochs"}]),
    "evolution-hp": hp_doc("evolution", [{"name": "population_size", "value": "4"}]),
    "evolution-nas": nas_doc("evolution"),
    "enas": nas_doc("enas"),
    "darts": DARTS,
}


def context(doc: dict, seed: int = 0) -> SearchContext:
    experiment, problems = validate("case.yaml", doc)
    assert problems == []
    settings = {s.name: str(s.value) for s in experiment.spec.algorithm.algorithm_settings or []}
    return SearchContext(experiment, settings, seed)


def objective(assignments: dict[str, str]) -> float:
    """A deterministic pseudo-score; for HP spaces it prefers lr near 0.01."""
    if "lr" in assignments:
        return 1 - abs(float(assignments["lr"]) - 0.01) * 5 - 0.01 * len(assignments["opt"])
    digest = hashlib.sha1(str(sorted(assignments.items())).encode()).hexdigest()
    return int(digest[:6], 16) / 0xFFFFFF


def drive(doc: dict, seed: int, trials: int, parallel: int = 1):
    """Run the algorithm as the engine does; returns the assignments in order."""
    algorithm = create(context(doc, seed))
    history: list[TrialResult] = []
    out = []
    for index in range(trials):
        visible = history[:max(index - parallel + 1, 0)]
        assignments = algorithm.suggest(index, visible)
        if assignments == WAIT:
            assignments = algorithm.suggest(index, history)
        if assignments is None:
            break
        assert assignments != WAIT
        out.append(assignments)
        history.append(TrialResult(index, assignments, "Succeeded", objective(assignments)))
    return out, algorithm, history


def assert_in_space(doc: dict, assignments: dict[str, str]) -> None:
    experiment, _ = validate("case.yaml", doc)
    spec = experiment.spec
    if spec.parameters:
        params = {p.name: p for p in search_space.parameters(spec)}
        assert set(assignments) == set(params)
        for name, value in assignments.items():
            p = params[name]
            assert isinstance(value, str)
            if p.choices:
                assert value in p.choices
            else:
                number = int(value) if p.kind == "int" else float(value)
                assert p.low - 1e-9 <= number <= p.high + 1e-9, (name, value)
    elif spec.algorithm.algorithm_name == "darts":
        assert set(assignments) == {"algorithm-settings", "search-space", "num-layers"}
    else:
        layers = spec.nas_config.graph_config.num_layers
        arc = search_space.enas_architecture(assignments)
        assert [len(row) for row in arc] == list(range(1, layers + 1))
        operations = search_space.enas_operations(spec.nas_config)
        assert all(0 <= row[0] < len(operations) for row in arc)
        # the trial image accepts it as is
        spec_ = enas_frontend.to_spec(assignments["architecture"], assignments["nn_config"],
                                      input_shape=(8, 8, 1), num_classes=10, input_scale=1 / 16,
                                      training=Training(), head=Head())
        assert len(spec_.nodes) == layers


@pytest.mark.parametrize("case", sorted(CASES))
class TestConformance:
    def test_suggestions_stay_in_the_space(self, case):
        suggestions, _, _ = drive(CASES[case], seed=0, trials=12)
        assert suggestions
        for assignments in suggestions:
            assert_in_space(CASES[case], assignments)

    def test_same_seed_same_search_other_seed_other_search(self, case):
        first, _, _ = drive(CASES[case], seed=1, trials=8, parallel=2)
        again, _, _ = drive(CASES[case], seed=1, trials=8, parallel=2)
        assert first == again
        if case != "darts":  # DARTS hands every trial the same three values by design
            other, _, _ = drive(CASES[case], seed=2, trials=8, parallel=2)
            assert other != first

    def test_replay_then_continue(self, case):
        """Resume: a fresh instance replays the first trials, then suggests valid new ones."""
        _, _, history = drive(CASES[case], seed=0, trials=6)
        fresh = create(context(CASES[case], 0))
        for result in history:
            fresh.replay(result.index, history[:result.index], result.assignments)
        nxt = fresh.suggest(len(history), history)
        if nxt is not None:
            assert_in_space(CASES[case], nxt)


def test_grid_covers_the_grid_then_ends():
    suggestions, _, _ = drive(CASES["grid"], seed=0, trials=100)
    combos = {tuple(sorted(s.items())) for s in suggestions}
    assert len(suggestions) == len(combos) == 2 * 5 * 4 * 2


def test_hyperband_promotes_the_best_with_more_resource():
    suggestions, algorithm, history = drive(CASES["hyperband"], seed=0, trials=40)
    _, rung, first, size, resource = algorithm.rungs[1]
    assert (rung, size, resource) == (1, 3, 3.0)
    rung0 = history[:9]
    best3 = sorted(rung0, key=lambda r: -r.value)[:3]
    promoted = suggestions[first:first + size]
    strip = [{k: v for k, v in a.items() if k != "epochs"} for a in promoted]
    assert strip == [{k: v for k, v in r.assignments.items() if k != "epochs"} for r in best3]
    assert {a["epochs"] for a in promoted} == {"3"}
    assert suggestions[first + size]["epochs"] == "9"
    assert len(suggestions) == sum(r[3] for r in algorithm.rungs)  # then exhausted


def test_hyperband_waits_for_the_previous_rung():
    algorithm = create(context(CASES["hyperband"], 0))
    history = [TrialResult(i, algorithm.suggest(i, []), "Succeeded", 0.5) for i in range(9)]
    assert algorithm.suggest(9, history[:5]) == WAIT
    assert isinstance(algorithm.suggest(9, history), dict)


def test_darts_assignments_are_katibs_literal_strings():
    algorithm = create(context(DARTS))
    assert algorithm.suggest(0, []) == {
        "algorithm-settings": wire_example("darts-cpu.yaml algorithm-settings"),
        "search-space": wire_example("darts-cpu.yaml search-space"),
        "num-layers": wire_example("darts-cpu.yaml num-layers"),
    }


def test_enas_wire_format_matches_katibs_numbering():
    doc = yaml.safe_load((KATIB_DATA / "examples/nas/enas-gpu.yaml").read_text())
    experiment, _ = validate("enas-gpu.yaml", doc)
    operations = search_space.enas_operations(experiment.spec.nas_config)
    assert len(operations) == 106
    assert operations[27] == {"opt_id": 27, "opt_type": "convolution", "opt_params": {
        "filter_size": "7", "num_filter": "96", "stride": "2"}}
    assert operations[105]["opt_params"] == {"reduction_type": "avg_pooling", "pool_size": 3}
    arc = search_space.enas_architecture({"architecture": wire_example("ENAS architecture")})
    produced = search_space.enas_assignments(arc, operations, experiment.spec.nas_config
                                             .graph_config)
    assert produced["architecture"] == wire_example("ENAS architecture")
    assert produced["nn_config"] == wire_example("ENAS nn_config")


def test_enas_controller_learns_from_the_architectures_it_sampled():
    """Reward architectures whose first layer is one of the 4 first ops: it samples them more."""
    import numpy as np

    doc = nas_doc("enas")
    doc["spec"]["algorithm"]["algorithmSettings"] = [
        {"name": "controller_learning_rate", "value": "0.02"},
        {"name": "controller_train_steps", "value": "3"},
        {"name": "controller_baseline_decay", "value": "0.5"}]
    algorithm = create(context(doc, 0))

    def share_of_rewarded() -> float:
        rng = np.random.default_rng(123)
        arcs = [algorithm.controller.run(4, algorithm.settings, rng)[0] for _ in range(100)]
        return sum(arc[0][0] < 4 for arc in arcs) / 100

    before = share_of_rewarded()
    history: list[TrialResult] = []
    for index in range(30):
        assignments = algorithm.suggest(index, history)
        reward = 1.0 if search_space.enas_architecture(assignments)[0][0] < 4 else 0.0
        history.append(TrialResult(index, assignments, "Succeeded", reward))
    algorithm.suggest(30, history)  # trains on the last ones
    after = share_of_rewarded()
    assert after > before + 0.2, (before, after)


def test_evolution_is_aging_tournament_selection_with_single_mutations():
    doc = CASES["evolution-hp"]
    algorithm = create(context(doc, 0))
    history = [TrialResult(i, algorithm.suggest(i, []), "Succeeded", float(i)) for i in range(4)]
    # population = the 4 most recent successful trials; each child differs in one parameter
    for index in range(4, 30):
        child = algorithm.suggest(index, history)
        population = history[-4:]
        distances = [sum(child[k] != p.assignments[k] for k in child) for p in population]
        assert min(distances) <= 1
        history.append(TrialResult(index, child, "Succeeded", float(index % 7)))
    # aging: the best trial ever (index 3, score 3.0... later ones reach 6) leaves the population
    assert algorithm.population_size == 4
