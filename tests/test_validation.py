"""``nasflow validate``: Katib's admission rules with field paths; every Katib example."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from pipeline.cli import main
from pipeline.early_stopping import KATIB_SHIPS
from pipeline.suggestion.registry import algorithms
from pipeline.validation import cluster_support, engine_support, validate
from tests.conftest import KATIB_DATA, ROOT

# Every example Katib ships, and what nasflow says of it.
EXAMPLES = {
    "argo/argo-workflow.yaml": "engine: trial kind Workflow",
    "early-stopping/median-stop-with-json-format.yaml": "ok",
    "early-stopping/median-stop.yaml": "ok",
    "fpga/xgboost-example.yaml": "ok",
    "hp-tuning/bayesian-optimization.yaml": "ok",
    "hp-tuning/cma-es.yaml": "ok",
    "hp-tuning/grid.yaml": "ok",
    "hp-tuning/hyperband.yaml": "ok",
    "hp-tuning/hyperopt-distribution.yaml": "ok",
    "hp-tuning/multivariate-tpe.yaml": "ok",
    "hp-tuning/optuna-distribution.yaml": "ok",
    "hp-tuning/random.yaml": "ok",
    # maxFailedTrialCount 3 > maxTrialCount 2: Katib's webhook refuses it too (its e2e test
    # overrides the counts before creating it).
    "hp-tuning/simple-pbt.yaml": "invalid: spec.maxFailedTrialCount: must be <= maxTrialCount",
    "hp-tuning/sobol.yaml": "ok",
    "hp-tuning/tpe.yaml": "ok",
    # a TrainJob of 2 nodes: nasflow run starts 2 local workers of its trainer's command
    "kubeflow-trainer/trainjob-pytorch.yaml": "ok",
    "kubeflow-training-operator/mpijob-horovod.yaml": "engine: trial kind MPIJob",
    "kubeflow-training-operator/pytorchjob-mnist.yaml": "engine: trial kind PyTorchJob",
    "kubeflow-training-operator/tfjob-mnist-with-summaries.yaml": "engine: trial kind TFJob",
    "kubeflow-training-operator/xgboostjob-lightgbm.yaml": "engine: trial kind XGBoostJob",
    "metrics-collector/custom-metrics-collector.yaml": "engine: metrics collector Custom",
    "metrics-collector/file-metrics-collector-with-json-format.yaml": "ok",
    "metrics-collector/file-metrics-collector.yaml": "ok",
    "metrics-collector/metrics-collection-strategy.yaml": "ok",
    "nas/darts-cpu.yaml": "ok",
    # Katib's own DARTS service refuses it: skip_connection has no parameters
    # ("Missing ParameterConfigs in Operation"), so its Suggestion fails.
    "nas/darts-gpu.yaml": "invalid: spec.nasConfig.operations[4].parameters: every operation "
                          "needs at least one parameter",
    "nas/enas-cpu.yaml": "ok",
    "nas/enas-gpu.yaml": "ok",
    "resume-experiment/from-volume-resume.yaml": "ok",
    "resume-experiment/long-running-resume.yaml": "ok",
    # Uses Tekton's $(trialParameters.lr), never Katib's ${trialParameters.learningRate}: Katib's
    # webhook refuses a declared parameter that the template does not use.
    "tekton/pipeline-run.yaml": "invalid: spec.trialTemplate.trialParameters[0].name: "
                                "'learningRate' is declared but never used",
    "trial-template/trial-configmap-source.yaml": "engine: trial template from a ConfigMap",
    "trial-template/trial-metadata-substitution.yaml": "ok",
}


def outcome(path: Path) -> str:
    raw = yaml.safe_load(path.read_text())
    experiment, problems = validate(str(path), raw)
    if problems:
        return "invalid: " + "; ".join(map(str, problems))
    reasons = engine_support(experiment)
    return "engine: " + "; ".join(reasons) if reasons else "ok"


def test_every_katib_example_is_listed():
    found = {str(p.relative_to(KATIB_DATA / "examples"))
             for p in (KATIB_DATA / "examples").rglob("*.yaml")}
    assert found == set(EXAMPLES)


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_katib_example(example):
    result = outcome(KATIB_DATA / "examples" / example)
    expected = EXAMPLES[example]
    assert result.startswith(expected), result
    if expected == "ok":
        assert result == "ok"


EXPERIMENTS = [(path, index, raw) for path in sorted((ROOT / "manifests").rglob("*.yaml"))
               for index, raw in enumerate(yaml.safe_load_all(path.read_text()))
               if isinstance(raw, dict) and raw.get("kind") == "Experiment"]


def test_every_experiment_manifest_is_a_case():
    """Only documents that hold an Experiment are cases (a case without one asserted nothing);
    every experiments/ file holds at least one, but the kustomizations and the volume claim the
    your-data experiments mount."""
    files = {path for path, _, _ in EXPERIMENTS}
    experiments = ROOT / "manifests" / "experiments"
    others = {p.relative_to(experiments).as_posix() for p in experiments.rglob("*.yaml")
              if p.name != "kustomization.yaml" and p not in files}
    assert others == {"your-data/images-pvc.yaml"}
    assert len(EXPERIMENTS) >= 20


@pytest.mark.parametrize(("path", "index", "raw"), EXPERIMENTS,
                         ids=[f"{p.relative_to(ROOT)}#{i + 1}" for p, i, _ in EXPERIMENTS])
def test_nasflow_manifests_are_valid_and_run_on_both_engines(path, index, raw):
    experiment, problems = validate(str(path), raw)
    assert problems == []
    assert engine_support(experiment) == []
    # Katib runs all but nasflow's own algorithms (declared so in the registry) and early
    # stopping (asha: nasflow's service)
    name = experiment.spec.algorithm.algorithm_name
    early = experiment.spec.early_stopping
    katib_ships = early is None or early.algorithm_name in KATIB_SHIPS
    assert (cluster_support(experiment) == []) == (algorithms()[name].katib and katib_ships)


BASE = yaml.safe_load("""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: base}
spec:
  objective: {type: maximize, objectiveMetricName: score, additionalMetricNames: [loss]}
  algorithm: {algorithmName: random}
  parallelTrialCount: 2
  maxTrialCount: 4
  maxFailedTrialCount: 1
  parameters:
    - {name: x, parameterType: double, feasibleSpace: {min: "0", max: "1"}}
    - {name: n, parameterType: int, feasibleSpace: {min: "1", max: "3"}}
    - {name: c, parameterType: categorical, feasibleSpace: {list: [a, b]}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: x, reference: x}
      - {name: n, reference: n}
      - {name: c, reference: c}
      - {name: trial, reference: "${trialSpec.Name}"}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      metadata: {labels: {team: ml}}
      spec:
        template:
          spec:
            containers:
              - name: main
                image: x
                command: [python, t.py, "--x=${trialParameters.x}", "--n=${trialParameters.n}",
                          "--c=${trialParameters.c}", "--t=${trialParameters.trial}"]
""")


def mutate(path: str, value):
    doc = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    if value is DELETE:
        del node[int(last) if last.isdigit() else last]
    else:
        node[int(last) if last.isdigit() else last] = value
    return doc


DELETE = object()
RULES = [
    ("spec.maxTrialCounts", 5, "spec.maxTrialCounts",
     "unknown field (did you mean maxTrialCount?)"),
    ("spec.maxTrialCount", "4", "spec.maxTrialCount", "valid integer"),
    ("metadata.name", "Bad_Name", "metadata.name", "must match"),
    ("metadata.name", "a" * 41, "metadata.name", "at most 40 characters"),
    ("spec.parallelTrialCount", 5, "spec.parallelTrialCount", "must be <= maxTrialCount"),
    ("spec.maxFailedTrialCount", 5, "spec.maxFailedTrialCount", "must be <= maxTrialCount"),
    ("spec.objective.type", "biggest", "spec.objective.type", "minimize or maximize"),
    ("spec.objective.additionalMetricNames", ["score"], "spec.objective.additionalMetricNames[0]",
     "must not repeat the objective"),
    ("spec.objective.metricStrategies", [{"name": "score", "value": "median"}],
     "spec.objective.metricStrategies[0].value", "min, max or latest"),
    ("spec.algorithm.algorithmName", "annealing", "spec.algorithm.algorithmName",
     "unknown algorithm"),
    ("spec.algorithm.algorithmSettings", [{"name": "random_state", "value": "-1"}],
     "spec.algorithm.algorithmSettings[0].value", "random_state must be >= 0"),
    ("spec.algorithm.algorithmSettings", [{"name": "gamma", "value": "0.2"}],
     "spec.algorithm.algorithmSettings[0].name", "unknown setting 'gamma' for random"),
    ("spec.parameters.0.feasibleSpace.min", "2", "spec.parameters[0].feasibleSpace.min",
     "greater than max"),
    ("spec.parameters.1.feasibleSpace.max", "three", "spec.parameters[1].feasibleSpace.max",
     "must be an int value"),
    ("spec.parameters.2.feasibleSpace.list", [], "spec.parameters[2].feasibleSpace.list",
     "non-empty list"),
    ("spec.parameters.0.feasibleSpace.distribution", "logUniform",
     "spec.parameters[0].feasibleSpace.min", "logUniform needs min > 0"),
    ("spec.parameters.1.name", "x", "spec.parameters[1].name", "duplicate parameter 'x'"),
    ("spec.parameters", DELETE, "spec", "one of parameters or nasConfig is required"),
    ("spec.trialTemplate.primaryContainerName", "trainer",
     "spec.trialTemplate.primaryContainerName", "'trainer' is not a container"),
    ("spec.trialTemplate.trialParameters.0.reference", "lr",
     "spec.trialTemplate.trialParameters[0].reference", "'lr' is not a parameter"),
    ("spec.trialTemplate.trialParameters.3.reference", "${trialSpec.Labels[owner]}",
     "spec.trialTemplate.trialParameters[3].reference", "has no 'owner'"),
    ("spec.trialTemplate.trialParameters.3.reference", "${trialSpec.Uid}",
     "spec.trialTemplate.trialParameters[3].reference", "unknown trial metadata"),
    ("spec.trialTemplate.trialParameters.2.name", "x",
     "spec.trialTemplate.trialParameters[2].name", "duplicate name 'x'"),
    ("spec.trialTemplate.trialSpec.metadata.name", "fixed",
     "spec.trialTemplate.trialSpec.metadata.name", "must be omitted"),
    ("spec.trialTemplate.trialSpec.kind", "Workflow", "spec.trialTemplate",
     "needs successCondition and failureCondition"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "File"}, "source": {
        "fileSystemPath": {"path": "metrics.log", "kind": "File"}}},
     "spec.metricsCollectorSpec.source.fileSystemPath.path", "must be absolute"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "StdOut"},
                                   "source": {"filter": {"metricsFormat": ["(\\w+)=.*"]}}},
     "spec.metricsCollectorSpec.source.filter.metricsFormat[0]", "two capture groups"),
    ("spec.metricsCollectorSpec", {"collector": {"kind": "Magic"}},
     "spec.metricsCollectorSpec.collector.kind", "must be one of"),
    ("spec.earlyStopping", {"algorithmName": "medianstop",
                            "algorithmSettings": [{"name": "start_step", "value": "0"}]},
     "spec.earlyStopping.algorithmSettings[0].value", "start_step must be >= 1"),
    ("spec.resumePolicy", "Sometimes", "spec.resumePolicy", "Never, LongRunning or FromVolume"),
]


@pytest.mark.parametrize(("field", "value", "path", "message"), RULES,
                         ids=[f"{r[0]}={str(r[1])[:15]}" for r in RULES])
def test_rule(field, value, path, message):
    _, problems = validate("m.yaml", mutate(field, value))
    assert any(p.path == path and message in p.message for p in problems), problems


def test_base_manifest_is_valid():
    assert validate("m.yaml", BASE)[1] == []


def test_undeclared_template_parameter():
    doc = mutate("spec.trialTemplate.trialSpec.spec.template.spec.containers.0.args",
                 ["--lr=${trialParameters.lr}"])
    _, problems = validate("m.yaml", doc)
    assert any("${trialParameters.lr} is used but not declared" in p.message for p in problems)


def test_grid_larger_than_its_space():
    doc = mutate("spec.algorithm.algorithmName", "grid")
    doc["spec"]["parameters"][0]["feasibleSpace"]["step"] = "0.5"  # 3 × 3 × 2 = 18 combinations
    doc["spec"]["maxTrialCount"] = 20
    _, problems = validate("m.yaml", doc)
    assert [str(p) for p in problems] == ["spec.maxTrialCount: grid has only 18 combinations"]


def test_enas_needs_both_outputs_declared():
    doc = yaml.safe_load((ROOT / "manifests/experiments/enas-digits.yaml").read_text())
    del doc["spec"]["trialTemplate"]["trialParameters"][1]
    _, problems = validate("m.yaml", doc)
    assert any("enas assigns 'nn_config'" in p.message for p in problems)


def test_evolution_needs_nasflows_suggestion_service_on_katib():
    doc = yaml.safe_load((ROOT / "manifests/experiments/enas-digits.yaml").read_text())
    doc["spec"]["algorithm"] = {"algorithmName": "evolution"}
    experiment, problems = validate("m.yaml", doc)
    assert problems == []
    assert cluster_support(experiment) == [
        "algorithm evolution is nasflow's own: Katib runs it only once nasflow's suggestion "
        "service is registered (kubectl apply -k manifests/suggestion)"]


def test_cli_exit_code_and_field_path(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate("spec.maxTrialCounts", 5)))
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(BASE))
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: valid"
    assert main(["validate", str(good), str(bad)]) == 2
    out = capsys.readouterr().out
    assert f"{bad}: spec.maxTrialCounts: unknown field (did you mean maxTrialCount?)" in out
    assert main(["run", str(bad), "--workdir", str(tmp_path)]) == 2
    assert "spec.maxTrialCounts" in capsys.readouterr().err
    assert not (tmp_path / "base").exists()  # nothing started


def test_darts_primitive_unknown_to_the_trial_is_refused():
    """Katib would accept max_pooling_5x5 and fail every trial with a KeyError."""
    doc = yaml.safe_load((KATIB_DATA / "examples/nas/darts-cpu.yaml").read_text())
    doc["spec"]["nasConfig"]["operations"][0]["parameters"][0]["feasibleSpace"]["list"] = [
        "3", "5"]
    _, problems = validate("darts.yaml", doc)
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        ("spec.nasConfig.operations[0]", "DARTS has no primitive max_pooling_5x5")]


@pytest.mark.parametrize(("algorithm", "settings", "note"), [
    ("bayesianoptimization", [{"name": "base_estimator", "value": "RF"},
                              {"name": "acq_func", "value": "EI"}],
     "bayesianoptimization setting(s) base_estimator=RF (accepted for Katib, ignored by "
     "nasflow run: the engine's bayesianoptimization is Optuna's GPSampler"),
    ("cmaes", [{"name": "restart_strategy", "value": "ipop"}],
     "cmaes setting(s) restart_strategy=ipop (accepted for Katib, ignored by nasflow run: "
     "Optuna's CmaEsSampler (>= 4.4) has no restarts)"),
    ("cmaes", [{"name": "restart_strategy", "value": "none"}], None),
    ("bayesianoptimization", [{"name": "base_estimator", "value": "GP"}], None),
])
def test_settings_accepted_for_katib_but_ignored_are_named(algorithm, settings, note, tmp_path,
                                                            capsys):
    doc = mutate("spec.algorithm", {"algorithmName": algorithm, "algorithmSettings": settings})
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    if note is None:
        assert lines == [f"{path}: valid"]
        return
    assert lines[0] == f"{path}: valid"
    assert lines[1].startswith(f"{path}: note: {note}")
    assert len(lines) == 2
