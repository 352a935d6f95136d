"""Texts and series: loading (text columns, chronological windows), the sequence builder (raw
strings and raw windows in), and both manifests end to end on the embedded engine with a real
MLflow server, their champions answering raw input."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from trial_image import data as datasets
from trial_image.data.generated import sensor, tickets
from trial_image.data.series import Window
from trial_image.data.tables import TableOptions
from trial_image.errors import InputError
from trial_image.spec import CandidateSpec, Frame, Head, Node, Series, Table

ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def test_the_generated_sets_are_the_same_everywhere():
    texts, labels = tickets()
    assert len(texts) == 2000 and sorted(set(labels)) == ["billing", "cancellation", "login",
                                                          "shipping"]
    assert texts[:2] == tickets()[0][:2]
    values = sensor()
    assert values.shape == (4000,) and values.dtype == np.float32
    # the daily cycle: a value is closer to the one 24 hours before than to the one 12 before
    assert np.mean(np.abs(values[24:] - values[:-24])) < np.mean(np.abs(values[12:] - values[:-12]))


def test_a_text_column_makes_the_text_family(tmp_path):
    data = datasets.load("tickets")
    assert (data.family.name, data.columns, data.task) == ("text", (("text", "text"),),
                                                      "classification")
    assert data.classes == ("billing", "cancellation", "login", "shipping")
    frame = pd.DataFrame({"body": tickets()[0][:300], "id": range(300),
                          "team": tickets()[1][:300]})
    path = tmp_path / "tickets.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"a text must be the only feature column.*id=ignore"):
        datasets.load(f"csv:{path}", table=TableOptions("team", None, None))
    only = datasets.load(f"csv:{path}", table=TableOptions("team", None, {"id": "ignore"}))
    assert only.columns == (("body", "text"),) and only.family.name == "text"


def test_series_splits_are_chronological_and_their_test_targets_fixed():
    short, long = (datasets.load("sensor", window=Window(lookback=n)) for n in (24, 168))
    for data in (short, long):
        assert data.family.name == "series" and data.task == "regression"
        # the values: train targets precede validation's, which precede test's
        assert data.train.x.shape[1] == data.input_shape[0]
    np.testing.assert_array_equal(short.test.y, long.test.y)
    assert short.test.count == 800  # the last 20 % of 4,000 hours
    values = sensor()
    first_test = int(np.flatnonzero(values == short.test.y[0])[0])
    assert first_test == 3200
    np.testing.assert_array_equal(short.test.x[0], values[3200 - 24:3200])


def test_a_series_file_with_gaps_leaves_their_windows_out(tmp_path, capfd):
    values = sensor()[:600].astype(object)
    values[100] = None
    path = tmp_path / "load.csv"
    pd.DataFrame({"hour": range(600), "kw": values}).to_csv(path, index=False)
    data = datasets.load(f"series:{path}", table=TableOptions(target="kw"),
                         window=Window(lookback=24, horizon=3))
    # 24 windows hold hour 100, and one has it as its target
    assert "(25 touching a missing value left out)" in capfd.readouterr().err
    assert sum(s.count for s in data.splits) == 600 - 24 - 3 + 1 - 25
    for table, window, message in [
            (TableOptions(target="kw"), Window(lookback=0), "at least 1"),
            (TableOptions(target="hour"), Window(lookback=595), "at least 10 are needed"),
            (TableOptions(), Window(lookback=24), "needs --target"),
            (TableOptions(target="kw", task="classification"), Window(),
             "at least 2 value columns")]:
        with pytest.raises(InputError, match=message):
            datasets.load(f"series:{path}", table=table, window=window)


def test_sequence_models_take_raw_strings_and_raw_windows():
    import tensorflow as tf

    from trial_image.builder import build_model

    text = datasets.load("tickets")
    frame = Frame(input_shape=text.input_shape, num_classes=4, table=Table(text.columns, 8, 16))
    nodes = [Node("conv1d", (0,), {"filters": 8, "kernel": 3}),
             Node("rnn", (1,), {"units": 8, "bidirectional": True}),
             Node("attention", (2,), {"heads": 2, "key_dim": 4}),
             Node("identity", (1, 3), {}, "concat")]
    spec = frame.candidate("hyperparameters", nodes)
    assert spec.family.name == "text"
    model = build_model(spec, text.train)
    out = model({"text": tf.constant([["never seen words xyzzy"], [""]])}).numpy()
    assert out.shape == (2, 4) and np.allclose(out.sum(axis=1), 1, atol=1e-5)

    series = datasets.load("sensor")
    frame = Frame(input_shape=(24,), num_classes=0, task="regression", series=Series(24))
    spec = frame.candidate("hyperparameters", nodes)
    model = build_model(spec, series.train)
    out = model(tf.constant(series.test.x[:3])).numpy()
    assert out.shape == (3, 1) and 0 < out.mean() < 60  # the sensor's units
    with pytest.raises(InputError, match=r"node 1 \(dense\): not an operation on series"):
        frame.candidate("hyperparameters", [Node("dense", (0,), {"units": 4})])


def test_a_series_read_relative_to_its_last_value_follows_a_trend_past_its_training_values(
        tmp_path):
    """A ramp: the test windows lie above every training value. With the deep path's output at
    zero, a ``last``-level model forecasts the last value plus the training windows' mean change
    (the naive forecast with drift) wherever the window lies; a ``global`` one forecasts the
    training targets' mean."""
    from trial_image.builder import build_model

    path = tmp_path / "ramp.csv"
    pd.DataFrame({"t": range(400), "value": 2.0 * np.arange(400)}).to_csv(path, index=False)
    data = datasets.load(f"series:{path}", table=TableOptions(target="value"),
                         window=Window(lookback=12, horizon=3))
    assert data.test.x.min() > data.train.y.max()
    nodes = [Node("conv1d", (0,), {"filters": 4, "kernel": 3})]
    specs = {}
    for level, expected in [("last", data.test.x[:, -1] + 6.0), ("global", data.train.y.mean())]:
        specs[level] = spec = Frame((12,), 0, task="regression", series=Series(12, level),
                                    head=Head(wide="linear")).candidate("hyperparameters", nodes)
        model = build_model(spec, data.train)
        for name in ("target", "wide_linear"):
            layer = model.get_layer(name)
            layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
        np.testing.assert_allclose(model(data.test.x).numpy()[:, 0], expected, rtol=1e-5)
    assert specs["last"].candidate_id != specs["global"].candidate_id
    assert CandidateSpec.from_dict(specs["last"].to_dict()) == specs["last"]
    # a spec written before levels keeps its identifier
    old = specs["global"].to_dict()
    del old["series"]["level"]
    # (48f07f4fd388: what the version before levels computed for it)
    assert CandidateSpec.from_dict(old).candidate_id == specs["global"].candidate_id == \
        "48f07f4fd388"
    with pytest.raises(InputError, match="level must be one of global, last, got 'mean'"):
        Frame((12,), 0, task="regression", series=Series(12, "mean")).candidate(
            "hyperparameters", nodes)


def labelled_series(folder, rows: int = 300, steps: int = 40):
    """Two classes, as in the UCR archive's GunPoint: a bump early or late in the series, on
    noise; one series a row, its class in column ``shape``."""
    rng = np.random.default_rng(3)
    late = rng.random(rows) < 0.5
    t = np.arange(steps)
    centre = np.where(late, 28, 12)[:, None] + rng.integers(-2, 3, (rows, 1))
    values = np.exp(-((t - centre) / 3.0) ** 2) + rng.normal(0, 0.2, (rows, steps))
    frame = pd.DataFrame(values, columns=[f"t{i}" for i in range(steps)])
    frame.insert(0, "shape", np.where(late, "late", "early"))
    path = folder / "shapes.csv"
    frame.to_csv(path, index=False)
    return path


def test_labelled_series_are_classified_whole(tmp_path, capfd):
    import keras

    from trial_image.builder import build_model
    from trial_image.training import quiet_keras

    path = labelled_series(tmp_path)
    options = TableOptions(target="shape", task="classification")
    data = datasets.load(f"series:{path}", table=options)
    assert (data.family.name, data.task, data.input_shape, data.classes) == (
        "series", "classification", (40,), ("early", "late"))
    assert data.train.count + data.validation.count + data.test.count == 300
    assert "300 series of 40 values in 2 classes" in capfd.readouterr().err
    again = datasets.load(f"series:{path}", table=options)  # splits by content: stable
    assert again.test.digest == data.test.digest

    def accuracy(wide: str) -> float:
        quiet_keras()
        keras.utils.set_random_seed(0)
        spec = Frame((40,), 2, series=Series(40), head=Head(wide=wide)).candidate(
            "hyperparameters", [Node("conv1d", (0,), {"filters": 8, "kernel": 5})])
        model = build_model(spec, data.train)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(data.train.x, data.train.y, epochs=30, verbose=0)
        return model.evaluate(data.test.x, data.test.y, verbose=0)[1]

    # the head averages over the steps: where the bump is is lost, unless a wide path (a
    # linear map of the window) sees it
    assert accuracy("none") < 0.7 < 0.9 < accuracy("linear")  # chance is 0.5

    with pytest.raises(InputError, match="--lookback and --horizon do not apply"):
        datasets.load(f"series:{path}", table=options, window=Window(lookback=8))
    frame = pd.read_csv(path)
    frame["t7"] = frame["t7"].astype(object)
    frame.loc[4, "t7"] = "x"
    frame.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"column 't7': data row 5 holds 'x', not a number"):
        datasets.load(f"series:{tmp_path / 'bad.csv'}", table=options)
    with pytest.raises(InputError, match="--task ranking does not apply"):
        datasets.load("sensor", table=TableOptions(task="ranking"))


def search(manifest: str, name: str, tmp_path, uri: str, replace: dict[str, str],
           lists: dict[str, list[str]] | None = None):
    doc = yaml.safe_load((ROOT / "manifests" / "experiments" / manifest).read_text())
    doc["metadata"]["name"] = name
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = name
    doc["spec"]["maxTrialCount"] = doc["spec"]["parallelTrialCount"] = 2
    doc["spec"]["maxFailedTrialCount"] = 1
    for parameter in doc["spec"]["parameters"]:
        if parameter["name"] in (lists or {}):
            parameter["feasibleSpace"] = {"list": lists[parameter["name"]]}
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["command"] = [next((new for old, new in replace.items() if a.startswith(old)), a)
                            for a in container["command"]]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--finalize", "--promote",
         "--top-k", "1", "--final-epochs", "4", "--tracking-uri", uri, "--seed", "2",
         "--workdir", str(tmp_path / ".nasflow"), "--quiet", "--output", "json"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


@pytest.mark.slow
def test_text_and_series_manifests_end_with_champions_that_take_raw_input(mlflow_server,
                                                                          tmp_path):
    """Both manifests on the embedded engine (2 short trials each, then final training and
    promotion); the champions, loaded back from the registry, answer raw strings and raw
    windows, and score their logged test measure."""
    import mlflow

    text = search("sequences/tpe-tickets.yaml", "seq-tickets", tmp_path, mlflow_server.uri,
                  {"--epochs=": "--epochs=3"})
    series = search("sequences/tpe-sensor.yaml", "seq-sensor", tmp_path, mlflow_server.uri,
                    {"--epochs=": "--epochs=3"}, {"lookback": ["24"], "block": ["conv1d"]})
    assert text["final"]["test_metric"] == "Test-Accuracy"
    assert series["final"]["test_metric"] == "Test-RMSE"
    assert series["search"]["currentOptimalTrial"]["observation"]["metrics"][0]["name"] == \
        "Validation-RMSE"

    mlflow.set_tracking_uri(mlflow_server.uri)
    tickets_model = mlflow.pyfunc.load_model("models:/seq-tickets@champion")
    data = datasets.load("tickets")
    answers = tickets_model.predict(pd.DataFrame({"text": data.test.columns["text"]}))
    assert answers.shape == (data.test.count, 4)
    assert float(np.mean(answers.argmax(axis=1) == data.test.y)) == pytest.approx(
        text["final"]["test_score"], abs=1e-6)
    odd = tickets_model.predict(pd.DataFrame({"text": ["", None, "qwerty asdf"]}))
    assert odd.shape == (3, 4) and np.all(np.isfinite(odd))

    sensor_model = mlflow.pyfunc.load_model("models:/seq-sensor@champion")
    windows = datasets.load("sensor")
    forecast = np.ravel(sensor_model.predict(windows.test.x))
    rmse = math.sqrt(float(np.mean((forecast - windows.test.y) ** 2)))
    assert rmse == pytest.approx(series["final"]["test_score"], rel=1e-4)

    # the forecaster compressed: LiteRT variants judged by their RMSE's increase in percent;
    # distillation (a classifier's softened outputs) is left out with a reason
    compress = subprocess.run(
        [sys.executable, "-m", "pipeline", "compress", "models:/seq-sensor@champion",
         "--variants", "float32,int8-dynamic,distilled", "--max-accuracy-drop", "1",
         "--tracking-uri", mlflow_server.uri, "--output", "json"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600)
    assert compress.returncode == 0, compress.stderr[-3000:]
    assert "no distilled variant of a regression" in compress.stderr
    variants = {v["variant"]: v for v in json.loads(compress.stdout)}
    assert set(variants) == {"float32", "int8-dynamic"}
    float32 = variants["float32"]
    assert float32["metric"] == "Test-RMSE" and float32["version"] is not None
    assert float32["score"] == pytest.approx(rmse, rel=1e-4) and abs(float32["drop"]) < 0.01
    served = mlflow.pyfunc.load_model("models:/seq-sensor-variants@float32")
    np.testing.assert_allclose(np.ravel(served.predict(windows.test.x[:20])), forecast[:20],
                               rtol=1e-4)
