"""Promotion against a real MLflow tracking server (SQLite backend) on 127.0.0.1.

The trial runs here are real MLflow runs tagged as the trial image tags them, each with a small
pyfunc model, so registration, aliases and tags go through the real registry; the Keras path is
covered end to end by test_story.py.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import mlflow
import pytest
from mlflow import MlflowClient

from pipeline.promotion.optimal_trial import OptimalTrial
from pipeline.promotion.registry import PromotionError, Registry


class Constant(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return [0] * len(model_input)


def trial_run(uri: str, experiment: str, trial: str, accuracy: float,
              namespace: str = "default", metrics: dict[str, float] | None = None,
              tags: dict[str, str] | None = None) -> str:
    """A FINISHED run with the trial image's tags, metrics (Test-Accuracy: ``accuracy`` - 0.01
    unless ``metrics`` says) and a model under ``model``."""
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        exp_id = client.create_experiment(experiment)
    except mlflow.exceptions.MlflowException:
        exp_id = client.get_experiment_by_name(experiment).experiment_id
    run = client.create_run(exp_id, tags={
        "katib.experiment": experiment, "katib.trial": trial, "katib.namespace": namespace,
        "nasflow.dataset": "digits", "nasflow.candidate_id": f"c-{trial}",
        "nasflow.frontend": "enas", **(tags or {})})
    for name, value in {"Validation-Accuracy": accuracy, "Test-Accuracy": accuracy - 0.01,
                        **(metrics or {})}.items():
        client.log_metric(run.info.run_id, name, value)
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.pyfunc.log_model(name="model", python_model=Constant(), pip_requirements=[])
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def optimal(experiment: str, trial: str, value: float | None,
            maximize: bool = True) -> OptimalTrial:
    return OptimalTrial(experiment, "default", trial, "Validation-Accuracy", maximize, value,
                        "enas", {"architecture": "[[1]]"})


@pytest.fixture
def registry(mlflow_server):
    mlflow.set_tracking_uri(mlflow_server.uri)
    return Registry(mlflow_server.uri, f"model-{uuid.uuid4().hex[:8]}")


def aliases(reg: Registry) -> dict[str, str]:
    return dict(reg.client.get_registered_model(reg.model).aliases)


def test_champion_challenger_and_rollback(mlflow_server, registry):
    uri, exp = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}"
    for trial, acc in (("t1", 0.90), ("t2", 0.85), ("t3", 0.95)):
        trial_run(uri, exp, trial, acc)

    first = registry.promote(optimal(exp, "t1", 0.90))
    assert (first.decision, first.version, first.created) == ("champion", "1", True)
    assert first.previous_champion is None
    assert aliases(registry) == {"champion": "1"}
    tags = registry.client.get_model_version(registry.model, "1").tags
    assert tags["nasflow.experiment"] == exp and tags["nasflow.trial"] == "t1"
    assert tags["nasflow.algorithm"] == "enas" and tags["nasflow.dataset"] == "digits"
    assert tags["nasflow.architecture"] == "c-t1"
    assert float(tags["nasflow.objective.value"]) == 0.90
    assert tags["nasflow.objective.metric"] == "Validation-Accuracy"
    assert "t1" in registry.client.get_model_version(registry.model, "1").description

    worse = registry.promote(optimal(exp, "t2", 0.85))
    assert (worse.decision, worse.version, worse.champion) == ("challenger", "2", "1")
    assert aliases(registry) == {"champion": "1", "challenger": "2"}
    assert registry.client.get_model_version(registry.model, "2").tags[
        "nasflow.decision"] == "challenger"

    better = registry.promote(optimal(exp, "t3", 0.95))
    assert (better.decision, better.version, better.previous_champion) == ("champion", "3", "1")
    v3 = registry.client.get_model_version(registry.model, "3").tags
    assert v3["nasflow.previous_champion"] == "1" and v3["nasflow.decision"] == "champion"
    assert aliases(registry)["champion"] == "3"

    again = registry.promote(optimal(exp, "t3", 0.95))  # idempotent
    assert (again.version, again.created, again.decision) == ("3", False, "champion")
    assert len(registry.client.search_model_versions(f"name = '{registry.model}'")) == 3

    assert registry.rollback() == {"model": registry.model, "champion": "1", "rolled_back": "3"}
    assert aliases(registry)["champion"] == "1"
    assert registry.client.get_model_version(registry.model, "3").tags[
        "nasflow.rolled_back"] == "true"
    # the rolled-back version does not come back by itself with the next promotion
    trial_run(uri, exp, "t4", 0.91)
    nxt = registry.promote(optimal(exp, "t4", 0.91))
    assert (nxt.decision, nxt.version, nxt.previous_champion) == ("champion", "4", "1")
    with pytest.raises(PromotionError, match="has no champion to roll back"):
        Registry(uri, f"empty-{uuid.uuid4().hex[:6]}").rollback()


def test_min_improvement_and_minimize(mlflow_server, registry):
    uri, exp = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}"
    for trial, acc in (("a", 0.90), ("b", 0.905), ("c", 0.92)):
        trial_run(uri, exp, trial, acc)
    registry.promote(optimal(exp, "a", 0.90), min_improvement=0.01)
    small = registry.promote(optimal(exp, "b", 0.905), min_improvement=0.01)
    assert (small.decision, small.champion) == ("challenger", "1")
    large = registry.promote(optimal(exp, "c", 0.92), min_improvement=0.01)
    assert (large.decision, large.champion) == ("champion", "3")

    loss = Registry(uri, f"loss-{uuid.uuid4().hex[:6]}")
    loss.promote(optimal(exp, "a", 0.30, maximize=False))
    lower = loss.promote(optimal(exp, "b", 0.20, maximize=False))
    higher = loss.promote(optimal(exp, "c", 0.40, maximize=False))
    assert lower.decision == "champion" and higher.decision == "challenger"
    assert aliases(loss)["champion"] == lower.version


def test_string_objective_needs_a_metric(mlflow_server, registry):
    exp = f"exp-{uuid.uuid4().hex[:6]}"
    trial_run(mlflow_server.uri, exp, "d", 0.93)
    with pytest.raises(PromotionError, match="--metric Test-Accuracy"):
        registry.promote(optimal(exp, "d", None))
    decision = registry.promote(optimal(exp, "d", None), metric="Test-Accuracy")
    assert decision.decision == "champion" and decision.score == pytest.approx(0.92)


def test_missing_run_is_a_clear_error(mlflow_server, registry):
    with pytest.raises(PromotionError, match="no finished MLflow run for trial 'ghost'"):
        registry.promote(optimal("nowhere", "ghost", 0.5))


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_promoters_end_with_the_best(mlflow_server, round_, monkeypatch):
    """Six pipelines promote at once (scores in shuffled order): the best ends as champion.

    Every alias write is delayed at random (a slow network), so promoters act on stale reads;
    a promoter that wrote once without re-reading leaves a worse champion in most rounds.
    """
    write = Registry._alias
    jitter = random.Random(round_)

    def slow_alias(self, alias, version):
        time.sleep(jitter.uniform(0, 0.5))
        write(self, alias, version)

    monkeypatch.setattr(Registry, "_alias", slow_alias)
    uri, exp = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}"
    model = f"race-{uuid.uuid4().hex[:6]}"
    scores = [0.81, 0.97, 0.85, 0.93, 0.88, 0.90]
    scores = scores[round_:] + scores[:round_]
    for i, s in enumerate(scores):
        trial_run(uri, exp, f"t{i}", s)
    start = threading.Barrier(len(scores))

    def promote(i: int):
        reg = Registry(uri, model)  # one client per "pipeline"
        start.wait()
        return reg.promote(optimal(exp, f"t{i}", scores[i]))

    with ThreadPoolExecutor(len(scores)) as pool:
        decisions = list(pool.map(promote, range(len(scores))))
    reg = Registry(uri, model)
    champion = reg.client.get_model_version_by_alias(model, "champion")
    assert float(champion.tags["nasflow.objective.value"]) == max(scores)
    assert champion.tags["nasflow.trial"] == f"t{scores.index(max(scores))}"
    assert len(reg.client.search_model_versions(f"name = '{model}'")) == len(scores)
    assert sum(d.decision == "champion" and d.champion == champion.version
               for d in decisions) >= 1


def test_a_promoter_acting_on_a_stale_read_does_not_win(mlflow_server, monkeypatch):
    """The interleaving that breaks a read-then-write promoter, forced: the worse promoter reads
    before the better one registers and writes after the better one has finished."""
    uri, exp = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}"
    model = f"stale-{uuid.uuid4().hex[:6]}"
    trial_run(uri, exp, "low", 0.90)
    trial_run(uri, exp, "high", 0.95)
    high_done, low_waiting = threading.Event(), threading.Event()
    write = Registry._alias

    def held_alias(self, alias, version):
        if threading.current_thread().name == "low" and not high_done.is_set():
            low_waiting.set()
            assert high_done.wait(120)
        write(self, alias, version)

    monkeypatch.setattr(Registry, "_alias", held_alias)
    results = {}

    def run(trial, score):
        results[trial] = Registry(uri, model).promote(optimal(exp, trial, score))

    low = threading.Thread(target=run, args=("low", 0.90), name="low")
    low.start()
    assert low_waiting.wait(120)  # "low" saw only its own version and is about to write
    run("high", 0.95)
    high_done.set()
    low.join(120)
    reg = Registry(uri, model)
    assert reg.client.get_model_version_by_alias(model, "champion").tags["nasflow.trial"] == "high"
    assert results["low"].decision == "challenger" and results["high"].decision == "champion"


def test_promotion_says_when_the_test_data_differs(mlflow_server, registry):
    """Champion and challenger tested on different test splits (the data grew, or another
    dataset): the versions carry their runs' digests and the decision line says so."""
    from pipeline.cli.promote import decision_line

    uri, exp = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}"
    digests = {"t1": "aaaa", "t2": "aaaa", "t3": "bbbb"}
    for (trial, digest), acc in zip(digests.items(), (0.90, 0.85, 0.80), strict=True):
        trial_run(uri, exp, trial, acc, tags={"nasflow.test_digest": digest,
                                              "nasflow.data_digest": f"all-{digest}"})
    registry.promote(optimal(exp, "t1", 0.90))
    tags = registry.client.get_model_version(registry.model, "1").tags
    assert (tags["nasflow.test_digest"], tags["nasflow.data_digest"]) == ("aaaa", "all-aaaa")
    same = registry.promote(optimal(exp, "t2", 0.85))
    assert same.other_test_data is None
    assert "different test data" not in decision_line(same, optimal(exp, "t2", 0.85),
                                                      "Validation-Accuracy")
    other = registry.promote(optimal(exp, "t3", 0.80))
    assert (other.decision, other.other_test_data) == ("challenger", "1")
    line = decision_line(other, optimal(exp, "t3", 0.80), "Validation-Accuracy")
    assert line.endswith("note: version 1 was tested on different test data (its test digest "
                         "differs): the scores compare different splits")
