"""One conformance suite every suggestion algorithm passes, then each algorithm's own promises."""

from __future__ import annotations

import copy
import hashlib

import pytest
import yaml

from pipeline.katib import search_space
from pipeline.suggestion import algorithms, create
from pipeline.suggestion.base import WAIT, SearchContext, TrialResult
from pipeline.validation import validate
from tests.conftest import KATIB_DATA, ROOT, wire_example
from trial_image.frontends import enas as enas_frontend
from trial_image.spec import Frame

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


def nas_doc(algorithm: str, settings: list | None = None) -> dict:
    doc = copy.deepcopy(ENAS)
    if algorithm != "enas":
        doc["spec"]["algorithm"] = {"algorithmName": algorithm, "algorithmSettings": [
            {"name": "population_size", "value": "4"}, {"name": "sample_size", "value": "2"},
            *(settings or [])]}
    return doc


def multi_objective(doc: dict, objectives: str) -> dict:
    doc["spec"]["algorithm"]["algorithmSettings"].append({"name": "objectives",
                                                          "value": objectives})
    doc["spec"]["objective"].setdefault("additionalMetricNames", [])
    if "cost" in objectives:
        doc["spec"]["objective"]["additionalMetricNames"].append("cost")
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
    "nsga2": multi_objective(hp_doc("nsga2", [{"name": "population_size", "value": "4"}]),
                             "score:max,cost:min"),
    "pareto-evolution-hp": multi_objective(
        hp_doc("pareto-evolution", [{"name": "population_size", "value": "4"}]),
        "score:max,cost:min"),
    "pareto-evolution-nas": multi_objective(nas_doc("pareto-evolution"),
                                            "Validation-Accuracy:max,Parameter-Count:min"),
    "enas": nas_doc("enas"),
    "darts": DARTS,
    "pbt": hp_doc("pbt", [{"name": "n_population", "value": "5"},
                          {"name": "truncation_threshold", "value": "0.4"},
                          {"name": "suggestion_trial_dir", "value": "/checkpoints"}]),
}


def context(doc: dict, seed: int = 0) -> SearchContext:
    experiment, problems = validate("case.yaml", doc)
    assert problems == []
    settings = {s.name: str(s.value) for s in experiment.spec.algorithm.algorithm_settings or []}
    return SearchContext(experiment, settings, int(settings.get("random_state", seed)))


def objective(assignments: dict[str, str]) -> float:
    """A deterministic pseudo-score; for HP spaces it prefers lr near 0.01."""
    if "lr" in assignments:
        return 1 - abs(float(assignments["lr"]) - 0.01) * 5 - 0.01 * len(assignments["opt"])
    digest = hashlib.sha1(str(sorted(assignments.items())).encode()).hexdigest()
    return int(digest[:6], 16) / 0xFFFFFF


def cost(assignments: dict[str, str]) -> float:
    """A deterministic pseudo-cost, for the multi-objective algorithms."""
    return int(hashlib.sha1(str(sorted(assignments.items())).encode()).hexdigest()[6:12], 16)


def result(index: int, assignments: dict[str, str]) -> TrialResult:
    """Every 5th trial fails (no value), the others score :func:`objective` and cost
    :func:`cost` (under the metric names of the HP and the NAS cases)."""
    if index % 5 == 4:
        return TrialResult(index, assignments, "Failed", None)
    score, price = objective(assignments), cost(assignments)
    return TrialResult(index, assignments, "Succeeded", score,
                       {"score": score, "cost": price, "Validation-Accuracy": score,
                        "Parameter-Count": price})


def visible(history: list[TrialResult]):
    """What the engine shows an algorithm: ``seen(upto)``, the trials before ``upto``."""
    return lambda upto: history[:max(upto, 0)]


def drive(doc: dict, seed: int, trials: int, parallel: int = 1, algorithm=None,
          history: list[TrialResult] | None = None):
    """Run the algorithm as the engine does, from trial ``len(history)`` on; returns the
    assignments of every trial (None ends the search), the algorithm and the history."""
    algorithm = algorithm or create(context(doc, seed))
    history = list(history or [])
    for index in range(len(history), trials):
        assignments = algorithm.propose_in_turn(index, visible(history), parallel)
        if assignments is None:
            break
        assert assignments != WAIT
        history.append(result(index, assignments))
    return [r.assignments for r in history], algorithm, history


def resume(doc: dict, seed: int, history: list[TrialResult], parallel: int):
    """A fresh instance that replays ``history`` the way the engine does on --resume."""
    algorithm = create(context(doc, seed))
    for r in history:
        assert algorithm.replay(r.index, r.assignments, visible(history), parallel)
    return algorithm


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
                                      frame=Frame((8, 8, 1), 10, 1 / 16))
        assert len(spec_.nodes) == layers


def test_every_algorithm_is_in_the_conformance_suite():
    """Every algorithm the registry says the embedded engine runs has a case below."""
    covered = {doc["spec"]["algorithm"]["algorithmName"] for doc in CASES.values()}
    runnable = {name for name, a in algorithms().items() if a.suggestion is not None}
    assert runnable - covered == set(), "registered algorithms without a conformance case"


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

    @pytest.mark.parametrize("stop_after", [3, 7])
    def test_resumed_search_suggests_what_the_uninterrupted_one_does(self, case, stop_after):
        """Stopped after ``stop_after`` trials (with failed ones among them and 2 running at a
        time), replayed by a fresh instance, continued: trial for trial the same assignments."""
        uninterrupted, _, _ = drive(CASES[case], seed=5, trials=12, parallel=2)
        _, _, before = drive(CASES[case], seed=5, trials=stop_after, parallel=2)
        resumed = resume(CASES[case], 5, before, parallel=2)
        continued, _, _ = drive(CASES[case], seed=5, trials=12, parallel=2, algorithm=resumed,
                                history=before)
        assert continued == uninterrupted

    def test_no_configuration_twice_until_the_space_is_exhausted(self, case):
        """On a finite space every trial gets a configuration not proposed before, and the
        search ends when none is left. Hyperband ends with its last bracket first; its later
        rungs re-run configurations with more resource, so their assignments differ too.
        DARTS' rule repeats: every trial gets the same values (Katib's design); so does PBT's
        after its first generation: a member that ranks well keeps its hyperparameters."""
        doc = small_space(CASES[case])
        size = create(context(doc)).space.size
        suggestions, _, _ = drive(doc, seed=0, trials=int(min(size, 200)) + 5, parallel=2)
        keys = [search_space.key(a) for a in suggestions]
        if case == "darts":
            assert len(set(keys)) == 1 < len(keys)
            return
        if case == "pbt":
            assert len(set(keys[:5])) == 5 and len(set(keys)) < len(keys)
            return
        assert len(keys) == len(set(keys))
        if case != "hyperband":
            assert len(keys) == size


def small_space(doc: dict) -> dict:
    """The same experiment on a finite space: 12 HP configurations (Hyperband: × its resource),
    or 16 ENAS architectures (2 layers of 4 operations, 1 skip bit)."""
    doc = copy.deepcopy(doc)
    spec = doc["spec"]
    if "parameters" in spec:
        resource = [p for p in spec["parameters"] if p["name"] == "epochs"]
        spec["parameters"] = [
            {"name": "lr", "parameterType": "discrete", "feasibleSpace": {"list": ["0.01", "0.1"]}},
            {"name": "momentum", "parameterType": "double",
             "feasibleSpace": {"min": "0.5", "max": "0.7", "step": "0.1"}},
            {"name": "layers", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "2"}},
            {"name": "opt", "parameterType": "categorical", "feasibleSpace": {"list": ["adam"]}},
            *resource]
        spec["maxTrialCount"] = max(12, spec["parallelTrialCount"])
    elif spec["algorithm"]["algorithmName"] != "darts":
        spec["nasConfig"]["graphConfig"]["numLayers"] = 2
        spec["nasConfig"]["operations"] = spec["nasConfig"]["operations"][:1]
        spec["nasConfig"]["operations"][0]["parameters"] = [
            {"name": "filter_size", "parameterType": "categorical",
             "feasibleSpace": {"list": ["3", "5"]}},
            {"name": "num_filter", "parameterType": "categorical",
             "feasibleSpace": {"list": ["8", "16"]}}]
    return doc


def test_grid_covers_the_grid_then_ends():
    suggestions, _, _ = drive(CASES["grid"], seed=0, trials=100)
    combos = {tuple(sorted(s.items())) for s in suggestions}
    assert len(suggestions) == len(combos) == 2 * 5 * 4 * 2


def test_hyperband_promotes_the_best_with_more_resource():
    suggestions, algorithm, history = drive(CASES["hyperband"], seed=0, trials=40)
    _, rung, first, size, resource = algorithm.rungs[1]
    assert (rung, size, resource) == (1, 3, 3.0)
    rung0 = history[:9]
    best3 = sorted(rung0, key=lambda r: (r.value is None, -(r.value or 0), r.index))[:3]
    promoted = suggestions[first:first + size]
    strip = [{k: v for k, v in a.items() if k != "epochs"} for a in promoted]
    assert strip == [{k: v for k, v in r.assignments.items() if k != "epochs"} for r in best3]
    assert {a["epochs"] for a in promoted} == {"3"}
    assert suggestions[first + size]["epochs"] == "9"
    assert len(suggestions) == sum(r[3] for r in algorithm.rungs)  # then exhausted


def test_hyperband_waits_for_the_previous_rung():
    algorithm = create(context(CASES["hyperband"], 0))
    history = [TrialResult(i, algorithm.propose(i, []), "Succeeded", 0.5) for i in range(9)]
    assert algorithm.propose(9, history[:5]) == WAIT
    assert isinstance(algorithm.propose(9, history), dict)


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
    """Population = the 4 most recent successful trials: trial 0, the best ever (1000), has aged
    out, so no child is a mutation of it; failed trials are never parents."""
    doc = CASES["evolution-hp"]
    best_ever = {"lr": "0.05", "momentum": "0.9", "layers": "4", "opt": "sgd"}
    history = [TrialResult(0, best_ever, "Succeeded", 1000.0)]
    for i in range(1, 10):
        config = {"lr": str(0.001 * i), "momentum": "0.5", "layers": "1", "opt": "adam"}
        failed = i == 9  # the latest one failed: the population is trials 5-8
        history.append(TrialResult(i, config, "Failed" if failed else "Succeeded",
                                   None if failed else float(i)))
    population = history[5:9]

    def distance(a: dict, b: dict) -> int:
        return sum(a[k] != b[k] for k in a)

    for seed in range(20):
        algorithm = create(context(doc, seed))
        child = algorithm.suggest(10, history)
        assert min(distance(child, p.assignments) for p in population) == 1
        assert distance(child, best_ever) >= 2
        assert distance(child, history[9].assignments) != 1 or any(
            distance(child, p.assignments) == 1 for p in population)
