"""Multi-objective search: the Pareto arithmetic, its validation, the front on the engine, the
MnasNet reward, and promotion within a budget against a real MLflow server."""

from __future__ import annotations

import json
import math
import uuid

import keras
import pytest
from keras import layers
from mlflow import MlflowClient

from pipeline.cli import main
from pipeline.promotion.constraints import Constraint
from pipeline.suggestion import pareto
from pipeline.validation import validate
from tests.test_engine import experiment, run
from tests.test_promotion import trial_run
from trial_image.builder import multiply_adds
from trial_image.errors import InputError
from trial_image.reward import Reward

# ---- the arithmetic --------------------------------------------------------------------------


def test_objectives_parse_and_refuse():
    assert pareto.parse_objectives("Validation-Accuracy:max, Parameter-Count:min") == [
        ("Validation-Accuracy", True), ("Parameter-Count", False)]
    for bad, why in (("a:max", "at least two"), ("a:max,b:up", "'b:up' is not"),
                     ("a:max,a:min", "listed twice")):
        with pytest.raises(ValueError, match=why):
            pareto.parse_objectives(bad)


def test_non_dominated_sorting_crowding_and_front():
    # (accuracy, -parameters): a and b trade off, c is dominated by a, d by everyone
    a, b, c, d = (0.9, -100.0), (0.8, -10.0), (0.85, -200.0), (0.5, -300.0)
    assert pareto.non_dominated_ranks([a, b, c, d]) == [0, 0, 1, 2]
    assert pareto.front([a, b, c, d, a]) == [0, 1]  # a repeated point once
    # crowding: the ends infinite, the middle point the normalised span of its neighbours
    distances = pareto.crowding_distances([(0.0, 4.0), (1.0, 3.0), (3.0, 0.0)])
    assert distances[0] == distances[2] == math.inf
    assert distances[1] == pytest.approx((3 - 0) / 3 + (4 - 0) / 4)
    assert pareto.ranked([a, b, c, d])[2] == (1, -math.inf)


def test_hypervolume_by_hand():
    # two rectangles from (0, 0): 3x1 and 1x3 overlap in 1x1 -> 5; a dominated point adds nothing
    assert pareto.hypervolume_2d([(3, 1), (1, 3), (1, 1)], (0, 0)) == pytest.approx(5.0)
    assert pareto.hypervolume_2d([(3, 1)], (3, 0)) == 0.0


def test_validate_requires_collected_objectives():
    doc = experiment(algorithm="pareto-evolution", settings=[
        {"name": "objectives", "value": "score:max,cost:min"}])
    _, problems = validate("x.yaml", doc)
    assert [str(p) for p in problems] == [
        "spec.algorithm.algorithmSettings[0].value: objective cost is not collected: add it to "
        "spec.objective.additionalMetricNames"]
    doc["spec"]["objective"]["additionalMetricNames"].append("cost")
    assert validate("x.yaml", doc)[1] == []
    del doc["spec"]["algorithm"]["algorithmSettings"][0]
    assert [str(p) for p in validate("x.yaml", doc)[1]] == [
        "spec.algorithm.algorithmSettings: pareto-evolution requires objectives"]


def test_validate_says_pareto_algorithms_run_only_locally(capsys):
    from tests.conftest import ROOT

    assert main(["validate", str(ROOT / "manifests/experiments/pareto-digits.yaml"),
                 str(ROOT / "manifests/experiments/mnas-digits.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith("#1: valid (not supported by Katib: algorithm pareto-evolution is "
                           "nasflow's own: Katib runs it only once nasflow's suggestion service "
                           "is registered (kubectl apply -k manifests/suggestion))")
    assert "nsga2 is nasflow's own" in out[1]
    assert out[2].endswith("mnas-digits.yaml#1: valid")  # the Reward experiment: Katib runs it


# ---- the front on the engine -----------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["pareto-evolution", "nsga2"])
def test_engine_reports_the_pareto_front(algorithm, tmp_path, capsys):
    doc = experiment(algorithm=algorithm, max_trials=10, settings=[
        {"name": "objectives", "value": "score:max,cost:min"},
        {"name": "population_size", "value": "4"}])
    doc["spec"]["objective"]["additionalMetricNames"].append("cost")
    status, engine = run(doc, tmp_path)
    values = {t.name: (engine.scoring.value(t), engine.scoring.value(t, "cost"))
              for t in engine.trials if t.status == "Succeeded"}
    expected = {name for name, (s, c) in values.items()
                if not any(s2 >= s and c2 <= c and (s2, c2) != (s, c)
                           for s2, c2 in values.values())}
    front = status["paretoFront"]
    assert {row["trialName"] for row in front} == expected  # by brute force
    assert [row["values"]["score"] for row in front] == sorted(
        (row["values"]["score"] for row in front), reverse=True)
    # cost = 10x + y, as the fake trial computes it from its assignments
    for row in front:
        x, y = (float(a["value"]) for a in row["parameterAssignments"])
        assert row["values"]["cost"] == pytest.approx(10 * x + y, abs=1e-5)


def test_single_objective_status_has_no_front(tmp_path):
    status, _ = run(experiment(max_trials=2), tmp_path)
    assert "paretoFront" not in status


# ---- MnasNet's reward and the cost the builder counts ----------------------------------------


def test_reward_matches_mnasnet_by_hand():
    soft = Reward(target=100_000)
    assert soft(0.9, 200_000) == pytest.approx(0.9 * 2 ** -0.07)  # 0.85738
    assert soft(0.9, 200_000) == pytest.approx(0.857375, abs=1e-6)
    assert soft(0.9, 50_000) == pytest.approx(0.944745, abs=1e-6)  # 0.9 * 0.5^-0.07
    assert soft(0.9, 100_000) == 0.9
    hard = Reward(target=100_000, alpha=0.0, beta=-1.0)
    assert hard(0.9, 50_000) == 0.9  # no bonus under the target
    assert hard(0.9, 200_000) == pytest.approx(0.45)  # halved at twice the target
    with pytest.raises(InputError, match="--reward-target must be > 0"):
        Reward(target=0)


def test_multiply_adds_by_hand():
    x = keras.Input((8, 8, 3))
    y = layers.Conv2D(4, 3, padding="same")(x)  # 8*8 * 3*3*3*4 = 6912
    y = layers.SeparableConv2D(5, 3, padding="same", strides=2)(y)  # 4*4 * (3*3*4 + 4*5) = 896
    y = layers.DepthwiseConv2D(3, padding="same")(y)  # 4*4 * 3*3*5 = 720
    y = layers.MaxPooling2D()(y)  # not counted
    y = layers.Dense(10)(layers.GlobalAveragePooling2D()(y))  # 5*10 = 50
    assert multiply_adds(keras.Model(x, y)) == 6912 + 896 + 720 + 50


@pytest.mark.slow
def test_trial_reports_reward_every_epoch(tmp_path):
    from pipeline.engine.metrics_collector import parse_text
    from tests.conftest import run_trial

    result = run_trial(["--num-blocks=1", "--filters=8", "--epochs=3", "--reward-target=2000",
                        "--reward-cost=madds", "--reward-alpha=0", "--reward-beta=-1"],
                       tmp_path, f"sqlite:///{tmp_path}/m.db")
    assert result.returncode == 0, result.stderr[-2000:]
    seen = parse_text(result.stdout.splitlines(),
                      ["Validation-Accuracy", "Reward", "Multiply-Adds"])
    accuracy = [float(o.value) for o in seen if o.name == "Validation-Accuracy"]
    reward = [float(o.value) for o in seen if o.name == "Reward"]
    (madds,) = [float(o.value) for o in seen if o.name == "Multiply-Adds"]
    assert madds == 8 * 8 * 3 * 3 * 1 * 8 + 8 * 10  # conv 1->8 channels, then the classes
    assert len(reward) == len(accuracy) == 3
    for acc, r in zip(accuracy, reward, strict=True):  # hard constraint, cost over the target
        assert r == pytest.approx(acc * (madds / 2000) ** -1, rel=1e-6)


# ---- promotion within a budget ---------------------------------------------------------------


def test_constraints_parse():
    assert Constraint.parse("Inference-Latency-Ms<=2") == Constraint("Inference-Latency-Ms",
                                                                     "<=", 2.0)
    assert Constraint.parse(" Parameter-Count < 2e4 ").holds({"Parameter-Count": 19_999})
    assert not Constraint.parse("Parameter-Count<2e4").holds({})
    for bad in ("Parameter-Count=5", "<=3", "x<=nan", "x<=inf"):
        with pytest.raises(ValueError, match="write METRIC<=NUMBER"):
            Constraint.parse(bad)


@pytest.fixture
def budget_experiment(mlflow_server):
    """Four trials: accuracy against latency and size, as the trial image logs them."""
    exp = f"budget-{uuid.uuid4().hex[:6]}"
    for trial, acc, latency, params in (("big", 0.99, 3.0, 90_000), ("mid", 0.97, 1.5, 30_000),
                                        ("small", 0.95, 1.2, 12_000), ("tiny", 0.80, 0.5, 900)):
        trial_run(mlflow_server.uri, exp, trial, acc, metrics={
            "Best-Validation-Accuracy": acc, "Inference-Latency-Ms": latency,
            "Parameter-Count": params})
    return exp


def promote(uri: str, *args: str) -> int:
    return main(["promote", *args, "--tracking-uri", uri, "--source", "katib",
                 "--mlflow-retry-seconds", "3"])


def test_promote_picks_the_most_accurate_within_the_budget(mlflow_server, budget_experiment,
                                                           capsys):
    uri = mlflow_server.uri
    assert promote(uri, budget_experiment, "--constraint", "Inference-Latency-Ms<=2",
                   "--constraint", "Parameter-Count<=20000", "--output", "json") == 0
    decision = json.loads(capsys.readouterr().out)
    assert decision["decision"] == "champion" and decision["score"] == 0.95
    client = MlflowClient(uri)
    version = client.get_model_version_by_alias(budget_experiment, "champion")
    assert version.tags["nasflow.trial"] == "small"
    assert version.tags["nasflow.objective.metric"] == "Best-Validation-Accuracy"
    # a looser budget: the more accurate "mid" becomes champion
    assert promote(uri, budget_experiment, "--constraint", "Inference-Latency-Ms<=2") == 0
    assert client.get_model_version_by_alias(budget_experiment, "champion").tags[
        "nasflow.trial"] == "mid"


def test_no_model_within_the_budget_exits_1_with_the_closest(mlflow_server, budget_experiment,
                                                             capsys):
    code = promote(mlflow_server.uri, budget_experiment, "--constraint", "Parameter-Count<=500",
                   "--constraint", "Inference-Latency-Ms<=1")
    err = capsys.readouterr().err
    assert code == 1
    assert "meets Parameter-Count<=500, Inference-Latency-Ms<=1; closest: trial tiny " \
           "(Parameter-Count 900, Inference-Latency-Ms 0.5)" in err
    assert MlflowClient(mlflow_server.uri).search_registered_models(
        f"name = '{budget_experiment}'") == []  # nothing registered
    assert promote(mlflow_server.uri, budget_experiment, "--constraint", "Parameter-Count=1") == 2


def test_a_final_model_within_the_budget_comes_first(mlflow_server, budget_experiment, capsys):
    trial_run(mlflow_server.uri, budget_experiment, "mid", 0.98, tags={"nasflow.role": "final"},
              metrics={"Inference-Latency-Ms": 1.4, "Parameter-Count": 30_000,
                       "Test-Accuracy": 0.975})
    assert promote(mlflow_server.uri, budget_experiment, "--constraint",
                   "Inference-Latency-Ms<=2") == 0
    version = MlflowClient(mlflow_server.uri).get_model_version_by_alias(budget_experiment,
                                                                         "champion")
    assert version.tags["nasflow.objective.metric"] == "Test-Accuracy"
    assert float(version.tags["nasflow.objective.value"]) == 0.975
