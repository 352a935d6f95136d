"""Neural ensembles as champions: the greedy choice on validation outputs
(pipeline/finalize/ensemble.py) and the trial image's ensemble run (trial_image/ensemble.py),
which averages final models into one model served like any other."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.finalize.ensemble import MARGIN, choose
from trial_image.errors import InputError
from trial_image.tasks import CLASSIFICATION, REGRESSION


def noisy_classifiers(count: int, rows: int = 2000, seed: int = 0):
    """``count`` classifiers of 4 classes, each right ~70 % of the time, their errors
    independent: what averaging helps."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 4, rows)
    outputs = {}
    for k in range(count):
        logits = rng.normal(0, 1, (rows, 4))
        logits[np.arange(rows), truth] += 1.2
        outputs[f"t{k}"] = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return truth, outputs


def test_greedy_selection_averages_independent_finalists_from_the_winner():
    truth, outputs = noisy_classifiers(3)
    choice = choose(outputs, truth, CLASSIFICATION, "t1", size=3)
    assert next(iter(choice.counts)) == "t1" and set(choice.counts) == {"t0", "t1", "t2"}
    assert choice.proposed
    # the figures are those of the averaged outputs, computed here again
    mixed = sum(outputs[t] * n for t, n in choice.counts.items()) / sum(choice.counts.values())
    assert choice.mixed == pytest.approx(CLASSIFICATION.judge(truth, mixed))
    assert choice.single == pytest.approx(CLASSIFICATION.judge(truth, outputs["t1"]))
    assert choice.mixed[0] < (1 - MARGIN) * choice.single[0]
    assert choice.mixed[1] > choice.single[1] + 0.03  # accuracy, on 2,000 examples
    assert sum(choice.weights.values()) == pytest.approx(1.0)
    assert choice.describe().startswith("ensemble of t1 ×")

    # at most `size` different finalists
    assert len(choose(outputs, truth, CLASSIFICATION, "t1", size=2).counts) == 2
    assert choose(outputs, truth, CLASSIFICATION, "t1", size=1).counts == {"t1": 1}


def test_a_finalist_that_only_hurts_is_never_added_and_nothing_is_proposed():
    truth, outputs = noisy_classifiers(1)
    rng = np.random.default_rng(5)
    outputs["bad"] = rng.dirichlet(np.ones(4), len(truth))  # chance
    choice = choose(outputs, truth, CLASSIFICATION, "t0", size=3)
    assert choice.counts == {"t0": 1} and not choice.proposed
    assert "the winner alone" in choice.describe()


def test_a_small_gain_is_not_proposed_and_regression_averages_numbers():
    rng = np.random.default_rng(1)
    truth = rng.normal(0, 1, 1000)
    shared = rng.normal(0, 0.5, 1000)  # errors mostly shared: averaging barely helps
    outputs = {"a": truth + shared + rng.normal(0, 0.05, 1000),
               "b": truth + shared + rng.normal(0, 0.05, 1000)}
    choice = choose(outputs, truth, REGRESSION, "a", size=2)
    assert len(choice.counts) == 2 and choice.mixed[0] < choice.single[0]
    assert not choice.proposed and "not proposed" in choice.describe()
    independent = {"a": truth + rng.normal(0, 0.5, 1000), "b": truth + rng.normal(0, 0.5, 1000)}
    choice = choose(independent, truth, REGRESSION, "a", size=2)
    assert choice.proposed and choice.mixed[1] == pytest.approx(
        np.sqrt(np.mean(((independent["a"] + independent["b"]) / 2 - truth) ** 2)))


@pytest.mark.parametrize("text, message", [
    ("abc:1", "is not RUN_ID:COUNT"),
    (f"{'a' * 32}:1", "2 to 16 different runs, got 1"),
    (f"{'a' * 32}:1,{'a' * 32}:2", "(one repeated)"),
    (f"{'a' * 32}:0,{'b' * 32}:1", "is not RUN_ID:COUNT"),
    (",".join(f"{i:032x}:1" for i in range(40)), "2 to 16 different runs, got 17"),
])
def test_the_ensemble_flag_names_what_is_wrong(text, message):
    from trial_image.ensemble import parse

    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


@pytest.mark.slow
def test_an_ensemble_run_averages_final_models_and_serves_raw_windows(mlflow_server, tmp_path):
    """Two final runs of a series forecaster with different windows (24 and 48 values), then
    the trial image's ensemble run: its stored model reads the longest window, each member its
    last values; its logged test RMSE is that of the mean of the members' forecasts, computed
    here from the members loaded back; its parameters are theirs together."""
    import subprocess
    import sys

    import mlflow
    from mlflow import MlflowClient

    from tests.conftest import ROOT
    from trial_image import data as datasets

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           "MLFLOW_TRACKING_URI": mlflow_server.uri}
    common = ["--dataset=sensor", "--epochs=2", "--experiment-name=ens", "--role=final",
              "--train-on=train+validation", "--block=conv1d", "--units=8"]

    def trial(*flags: str) -> None:
        run = subprocess.run([sys.executable, "-m", "trial_image", *common, *flags], cwd=tmp_path,
                             env=env, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr[-3000:]

    trial("--lookback=24", "--trial-name=m24", "--wide=linear")
    trial("--lookback=48", "--trial-name=m48", "--wide=decomposed")
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("ens").experiment_id
    ids = {r.data.tags["katib.trial"]: r for r in client.search_runs([experiment])}
    members = f"{ids['m24'].info.run_id}:1,{ids['m48'].info.run_id}:3"
    trial("--lookback=24", "--trial-name=both", f"--ensemble-of={members}")

    run = {r.data.tags["katib.trial"]: r for r in client.search_runs([experiment])}["both"]
    assert run.data.tags["nasflow.frontend"] == "ensemble"
    assert run.data.tags["nasflow.role"] == "final"
    mlflow.set_tracking_uri(mlflow_server.uri)
    ensemble = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    test = datasets.load("sensor", window=datasets.Window(lookback=48)).test
    forecast = np.ravel(ensemble.predict(test.x))
    m24 = mlflow.pyfunc.load_model(f"runs:/{ids['m24'].info.run_id}/model")
    m48 = mlflow.pyfunc.load_model(f"runs:/{ids['m48'].info.run_id}/model")
    by_hand = 0.25 * np.ravel(m24.predict(test.x[:, 24:])) + 0.75 * np.ravel(m48.predict(test.x))
    np.testing.assert_allclose(forecast, by_hand, rtol=1e-4, atol=1e-4)
    rmse = float(np.sqrt(np.mean((by_hand - test.y) ** 2)))
    assert run.data.metrics["Test-RMSE"] == pytest.approx(rmse, rel=1e-4)
    assert run.data.metrics["Parameter-Count"] == ids["m24"].data.metrics["Parameter-Count"] + \
        ids["m48"].data.metrics["Parameter-Count"]
    # compressed like any champion: each LiteRT variant reads the same 48 values
    assert run.data.params["lookback"] == "48"
    mlflow.register_model(f"runs:/{run.info.run_id}/model", "ens")
    done = subprocess.run([sys.executable, "-m", "trial_image", "compress", "--model-uri",
                           "models:/ens/1", "--variants", "float16,int8-dynamic"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    variants = {r.data.tags.get("nasflow.variant"): r.data.metrics for r in client.search_runs(
        [experiment], "tags.`nasflow.role` = 'variant'")}
    assert set(variants) == {"float16", "int8-dynamic"}
    assert variants["float16"]["Test-RMSE"] == pytest.approx(rmse, rel=0.01)
    assert variants["int8-dynamic"]["Test-RMSE"] == pytest.approx(rmse, rel=0.05)
