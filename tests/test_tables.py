"""Tables: loading (kinds, task, stable splits, clear errors), the table builder (raw rows in,
unseen and missing values answered), serving raw rows, and regression through promotion.

Real data (scikit-learn's bundled tables, a generated customer CSV), real TensorFlow, a real
MLflow server for the registry.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT
from tests.mlflow_server import served_model
from tests.tables import customers, write_customers
from trial_image import data as datasets
from trial_image.data.tables import TableOptions
from trial_image.errors import InputError
from trial_image.spec import CandidateSpec, Frame, Node, Table

ENV = {"PYTHONPATH": str(ROOT), "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}
CHURN = TableOptions("churn", None, {"region": "categorical"})


def churn_data(tmp_path, rows: int = 1200):
    return datasets.load(f"csv:{write_customers(tmp_path, rows)}", table=CHURN)


# ---- loading -----------------------------------------------------------------------------------

def test_bundled_tables_have_their_task_classes_and_columns():
    cancer, wine, diabetes = (datasets.load(n) for n in ("breast_cancer", "wine", "diabetes"))
    assert (cancer.task, cancer.num_classes, len(cancer.columns)) == ("classification", 2, 30)
    assert (wine.task, wine.num_classes, len(wine.columns)) == ("classification", 3, 13)
    assert (diabetes.task, diabetes.num_classes, len(diabetes.columns)) == ("regression", 0, 10)
    assert diabetes.train.y.dtype == np.float32 and cancer.train.y.dtype == np.int32
    # every row in exactly one split
    assert sum(s.count for s in diabetes.splits) == 442
    assert {kind for _, kind in diabetes.columns} == {"numeric"}


def test_a_csv_with_text_codes_and_gaps_is_typed_and_said(tmp_path, capfd):
    data = churn_data(tmp_path)
    assert dict(data.columns) == {"age": "numeric", "tenure_months": "numeric",
                                  "plan": "categorical", "region": "categorical",
                                  "support_calls": "numeric", "monthly_bill": "numeric"}
    assert data.classes == ("no", "yes") and data.task == "classification"
    said = capfd.readouterr().err
    assert "target 'churn' (classification, 2 classes)" in said and "plan:categorical" in said
    everything = pd.concat([pd.DataFrame(s.columns) for s in data.splits])
    assert everything["age"].isna().sum() == customers()["age"].isna().sum() > 0
    assert (everything["plan"] == "").sum() == customers()["plan"].isna().sum() > 0
    assert set(everything["region"]) == {"1", "2", "3", "4", "5"}  # codes as text, no ".0"
    bill = datasets.load(f"csv:{tmp_path / 'customers.csv'}",
                         table=TableOptions("monthly_bill", None, None))
    assert bill.task == "regression" and bill.num_classes == 0


def test_parquet_and_a_bucket_path_read_the_same_rows(tmp_path):
    """The same table as CSV on disk, as Parquet, and as CSV behind TensorFlow's ram:// file
    system (the path gs:// takes): the same splits, row for row."""
    import tensorflow as tf

    frame = customers()
    frame.to_parquet(tmp_path / "customers.parquet", index=False)
    bucket = f"ram://tables-{time.time_ns()}/customers.csv"
    with tf.io.gfile.GFile(bucket, "w") as f:
        f.write(frame.to_csv(index=False))
    csv = churn_data(tmp_path)
    for name in (f"parquet:{tmp_path / 'customers.parquet'}", f"csv:{bucket}"):
        other = datasets.load(name, table=CHURN)
        assert other.columns == csv.columns
        for mine, theirs in zip(csv.splits, other.splits, strict=True):
            assert (mine.name, mine.count) == (theirs.name, theirs.count)
            np.testing.assert_array_equal(mine.y, theirs.y)
            np.testing.assert_array_equal(mine.columns["plan"], theirs.columns["plan"])


def test_rows_keep_their_split_when_rows_are_appended(tmp_path):
    """The split of a row is decided by its content: 1,200 more rows move none of the first."""
    first = churn_data(tmp_path, 1200)
    grown = pd.concat([customers(1200), customers(1200, seed=8)], ignore_index=True)
    grown_path = tmp_path / "grown.csv"
    grown.to_csv(grown_path, index=False)
    second = datasets.load(f"csv:{grown_path}", table=CHURN)

    def rows(split) -> set[tuple]:
        return set(zip(*(split.columns[name].astype(str) for name, _ in first.columns),
                       strict=True))

    for name in ("train", "validation", "test"):
        before, after = getattr(first, name), getattr(second, name)
        assert rows(before) <= rows(after), name
    assert second.test.count > first.test.count


@pytest.mark.parametrize(("name", "options", "message"), [
    ("csv:{csv}", TableOptions(None, None, None), "needs --target COLUMN"),
    ("csv:{csv}", TableOptions("price", None, None), "--target: no column 'price'"),
    ("csv:{csv}", TableOptions("churn", None, {"postcode": "numeric"}),
     "--column-types: no column(s) postcode"),
    ("csv:{csv}", TableOptions("churn", None, {"plan": "numeric"}),
     "--column-types: column 'plan' is not numeric"),
    ("csv:{csv}", TableOptions("churn", "regression", None), "a regression needs numbers"),
    ("csv:{gaps}", TableOptions("age", None, None), "--target 'age': "),
    ("csv:{missing}", TableOptions("churn", None, None), "cannot read"),
    ("digits", TableOptions("churn", None, None), "are for tables, not 'digits'"),
])
def test_bad_table_input_names_the_field(tmp_path, name, options, message):
    csv = write_customers(tmp_path)
    name = name.format(csv=csv, gaps=csv, missing=tmp_path / "absent.csv")
    with pytest.raises(InputError) as raised:
        datasets.load(name, table=options)
    assert message in str(raised.value)


# ---- the builder -------------------------------------------------------------------------------

def table_spec(data, nodes, **training) -> CandidateSpec:
    from trial_image.spec import Training

    frame = Frame(input_shape=data.input_shape, num_classes=data.num_classes, task=data.task,
                  table=Table(data.columns, 4), training=Training(**training))
    return frame.candidate("hyperparameters", nodes)


EVERY_BLOCK = [Node("dense", (0,), {"units": 16}), Node("residual", (1,), {"units": 32}),
               Node("glu", (2,), {"units": 8}), Node("attention", (3,), {"heads": 2, "key_dim": 4}),
               Node("identity", (1, 4), {}, "concat")]


def test_table_spec_is_one_json_description_and_refuses_image_ops(tmp_path):
    data = churn_data(tmp_path)
    spec = table_spec(data, EVERY_BLOCK)
    again = CandidateSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec and again.candidate_id == spec.candidate_id
    assert again.family.name == "table"
    with pytest.raises(InputError, match=r"node 1 \(conv\): not an operation on tables"):
        table_spec(data, [Node("conv", (0,), {"filters": 8, "kernel": 3})])
    image = Frame(input_shape=(8, 8, 1), num_classes=10)
    with pytest.raises(InputError, match=r"node 1 \(dense\): not an operation on images"):
        image.candidate("hyperparameters", [Node("dense", (0,), {"units": 8})])


def test_the_model_takes_raw_rows_unseen_and_missing_values_included(tmp_path):
    """The statistics come from the training split alone; a category never seen and a missing
    number both get a finite answer."""
    import tensorflow as tf

    from trial_image.builder import build_model, multiply_adds
    from trial_image.builder.tables import Statistics

    data = churn_data(tmp_path)
    spec = table_spec(data, EVERY_BLOCK)
    model = build_model(spec, data.train)
    stats = Statistics.of(spec.table, data.train.columns)
    train_age = data.train.columns["age"]
    assert stats.numeric["age"][0] == pytest.approx(float(np.nanmean(train_age)), rel=1e-6)
    assert set(stats.vocabularies["plan"]) == set(data.train.columns["plan"])
    rows = {"age": [[np.nan], [40.0]], "tenure_months": [[3.0], [np.nan]],
            "plan": [["never-sold"], [""]], "region": [["99"], ["3"]],
            "support_calls": [[1.0], [9.0]], "monthly_bill": [[20.0], [80.0]]}
    out = model({k: tf.constant(np.array(v, dtype=object if isinstance(v[0][0], str)
                                         else np.float32)) for k, v in rows.items()}).numpy()
    assert out.shape == (2, 2) and np.all(np.isfinite(out))
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
    assert multiply_adds(model) > 0


@pytest.mark.filterwarnings("ignore:When providing `inputs` as a dict")  # the test's sub-model
def test_the_piecewise_encoding_bends_at_the_training_quantiles(tmp_path):
    """Each number also becomes its position in each quantile bin of its training values (0
    below, 1 above, linear across); a missing one is the mean's; the encoding is part of the
    candidate and of its identifier, and the scaled one keeps the identifiers from before."""
    import dataclasses

    import keras

    from trial_image.builder import build_model
    from trial_image.builder.tables import BINS

    data = churn_data(tmp_path)
    scaled = table_spec(data, [Node("dense", (0,), {"units": 8})])
    spec = dataclasses.replace(scaled, table=dataclasses.replace(scaled.table,
                                                                 numeric_encoding="piecewise"))
    assert spec.candidate_id != scaled.candidate_id
    assert CandidateSpec.from_dict(json.loads(spec.to_json())) == spec
    model = build_model(spec, data.train)
    (index, _), = [(i, n) for i, (n, _) in enumerate(data.columns) if n == "age"]
    encode = keras.Model(model.input, model.get_layer(f"c{index}_age_piecewise").output)
    ages = data.train.columns["age"]
    seen = ages[~np.isnan(ages)].astype("float64")
    edges = np.unique(np.quantile(seen, np.linspace(0, 1, BINS + 1)))
    values = np.array([seen.min() - 5, edges[3], (edges[5] + edges[6]) / 2, seen.max() + 5,
                       np.nan])
    rows = {name: np.full((5, 1), 1.0, "float32") if kind == "numeric"
            else np.full((5, 1), "", object) for name, kind in data.columns}
    rows["age"] = values[:, None].astype("float32")
    got = np.asarray(encode(rows))
    filled = np.where(np.isnan(values), seen.mean(), values)
    expected = np.clip((filled[:, None] - edges[:-1]) / np.diff(edges), 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert got.shape == (5, len(edges) - 1) and got[2, 5] == pytest.approx(0.5, abs=1e-4)
    with pytest.raises(InputError, match="numeric encoding must be one of scaled, piecewise"):
        dataclasses.replace(spec, table=dataclasses.replace(spec.table, numeric_encoding="x"))


def test_a_regression_learns_in_the_targets_units():
    """Diabetes: the network ends by undoing the target's normalisation, so a few epochs give
    predictions in its range (25–346) and beat predicting the training mean."""
    from trial_image.builder import build_model
    from trial_image.tasks import REGRESSION
    from trial_image.training import compile_model, predictions, train

    data = datasets.load("diabetes")
    spec = table_spec(data, [Node("dense", (0,), {"units": 32})], epochs=40, batch_size=32,
                      learning_rate=0.003)
    model = build_model(spec, data.train)
    compile_model(model, spec.training, 10, REGRESSION)
    result = train(model, data, spec.training, seed=0, patience=10, time_budget=None,
                   on_epoch=lambda epoch, metrics, replayed: None, task=REGRESSION)
    assert {"Validation-RMSE", "Validation-MAE", "Validation-R2"} <= set(result.history[-1])
    truth, predicted = predictions(model.predict_on_batch, data.test, REGRESSION)
    rmse = math.sqrt(float(np.mean((predicted - truth) ** 2)))
    baseline = math.sqrt(float(np.mean((data.train.y.mean() - truth) ** 2)))
    assert rmse < 0.85 * baseline
    assert 25 < predicted.mean() < 346


# ---- serving raw rows --------------------------------------------------------------------------

def test_served_rows_are_converted_or_refused_by_column():
    from trial_image.serving import model_inputs

    columns = [("age", "numeric"), ("region", "categorical")]
    inputs = model_inputs(pd.DataFrame({"age": [30, None, ""], "region": [3, None, "north"],
                                        "extra": [1, 2, 3]}), columns)
    assert inputs["age"].dtype == np.float32 and np.isnan(inputs["age"][1:, 0]).all()
    assert inputs["region"][:, 0].tolist() == ["3", "", "north"]
    with pytest.raises(InputError, match="column 'age' is numeric; row 1 holds 'old'"):
        model_inputs(pd.DataFrame({"age": [30, "old"], "region": [1, 2]}), columns)
    with pytest.raises(InputError, match=r"no column\(s\) region"):
        model_inputs(pd.DataFrame({"age": [30]}), columns)


def trial(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "trial_image", *args], env={**ENV, **env},
                          cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_a_csv_search_ends_with_a_champion_that_answers_raw_rows(mlflow_server, tmp_path):
    """A manifest over a mixed CSV through `nasflow run --finalize --promote --compress` (no
    int8-full: its input would be one tensor); the champion,
    served by `mlflow models serve`, answers pandas records of raw rows (an unseen category and
    missing values among them) and scores its logged test accuracy on the test rows."""
    from tests.test_engine_e2e import small

    csv = write_customers(tmp_path)
    path = small("tables/tpe-breast-cancer.yaml", "churn", trials=3, epochs=15,
                 tmp_path=tmp_path)
    with open(path) as f:
        doc = yaml.safe_load(f)
    container = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"][
        "containers"][0]
    container["command"] = [f"--dataset=csv:{csv}" if a.startswith("--dataset=")
                            else "--epochs=15" if a.startswith("--epochs=") else a
                            for a in container["command"]] + [
        "--target=churn", "--column-types=region=categorical"]
    with open(path, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", path, "--finalize", "--promote", "--compress",
         "--variants", "float32,int8-full", "--top-k", "1", "--final-epochs", "15",
         "--tracking-uri", mlflow_server.uri, "--model", "churn-table",
         "--workdir", str(tmp_path / ".nasflow"), "--seed", "1"],
        cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "churn-table version 1" in run.stdout and "champion" in run.stdout
    assert "a table's model reads columns: no int8-full variant" in run.stderr
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    (final,) = client.search_runs([client.get_experiment_by_name("churn").experiment_id],
                                  "tags.`nasflow.role` = 'final'")
    assert final.data.tags["nasflow.task"] == "classification"

    data = datasets.load(f"csv:{csv}", table=CHURN)
    test = pd.DataFrame(data.test.columns)
    test["region"] = test["region"].astype(int)  # integer codes, as the file has them
    test["age"] = test["age"].astype(object).where(test["age"].notna(), None)
    odd = pd.DataFrame({"age": [None], "tenure_months": [12.0], "plan": ["enterprise"],
                        "region": [42], "support_calls": [1], "monthly_bill": [55]})
    with served_model("models:/churn-table@champion", mlflow_server.uri, ENV, tmp_path) as port:

        def invoke(frame: pd.DataFrame) -> np.ndarray:
            body = {"dataframe_records": json.loads(frame.to_json(orient="records"))}
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/invocations", data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                return np.asarray(json.loads(response.read())["predictions"])

        answered = invoke(test)
        unusual = invoke(odd)
    assert answered.shape == (data.test.count, 2)
    assert float(np.mean(answered.argmax(axis=1) == data.test.y)) == pytest.approx(
        final.data.metrics["Test-Accuracy"], abs=1e-6)
    assert unusual.shape == (1, 2) and np.all(np.isfinite(unusual))

    # its LiteRT float32 variant (string lookups inside the .tflite file) answers the same rows
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.uri)
    lite = mlflow.pyfunc.load_model("models:/churn-table-variants@float32")
    np.testing.assert_allclose(lite.predict(test), answered, atol=1e-5)
    assert np.all(np.isfinite(lite.predict(odd)))

    # loaded in a user's own process: no Keras warning per column (TensorFlow's own start-up
    # lines come from MLflow's loader importing it first: TF_CPP_MIN_LOG_LEVEL=2 hides them)
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, mlflow; mlflow.pyfunc.load_model(sys.argv[1])",
         "models:/churn-table@champion"], env={**ENV, "MLFLOW_TRACKING_URI": mlflow_server.uri},
        capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert "must match the names" not in loaded.stderr, loaded.stderr[-2000:]


@pytest.mark.slow
def test_regression_promotion_moves_champion_only_to_a_lower_test_rmse(mlflow_server, tmp_path):
    """Three final models of a diabetes regression, promoted in turn against the real registry:
    the first becomes champion; one with a higher Test-RMSE (measured beside the champion on
    the same test split) stays challenger; one with a lower Test-RMSE takes over."""
    from pipeline.promotion.registry import Registry

    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    registry = Registry(mlflow_server.uri, "diabetes-rmse", 20)

    def final(name: str, epochs: int, rate: float) -> tuple[float, object]:
        trial("--dataset=diabetes", f"--epochs={epochs}", "--block=residual", "--units=64",
              f"--learning-rate={rate}", "--role=final", "--train-on=train+validation",
              "--experiment-name=diabetes-rmse", f"--trial-name={name}",
              "--evaluate-model=models:/diabetes-rmse@champion", env=env, cwd=tmp_path)
        optimal = registry.final_trial("diabetes-rmse", "local")
        assert optimal.metric == "Test-RMSE" and optimal.maximize is False
        return optimal.value, registry.promote(optimal)

    middle, first = final("middling", 1, 0.001)  # test RMSE ~73 here
    assert first.decision == "champion"
    worse, second = final("undertrained", 1, 0.0003)  # ~84
    assert worse > middle and second.decision == "challenger" and second.same_data
    better, third = final("trained", 2, 0.003)  # ~57
    assert better < middle and third.decision == "champion" and third.same_data
    assert third.champion_score == pytest.approx(middle, rel=1e-5)  # the champion, re-measured
    # the evaluation report of a regression: residuals and the error by decile
    run = registry.find_run(registry.final_trial("diabetes-rmse", "local"))
    artifacts = {a.path for a in registry.client.list_artifacts(run.info.run_id, "evaluation")}
    assert artifacts == {"evaluation/residuals.png", "evaluation/error_by_decile.json"}
    saved = registry.client.download_artifacts(run.info.run_id, "evaluation/error_by_decile.json",
                                               str(tmp_path))
    deciles = json.loads(Path(saved).read_text())["deciles"]
    assert sum(d["count"] for d in deciles) == datasets.load("diabetes").test.count


def test_enas_strings_of_table_operations_make_a_table_candidate():
    """The wire format Katib's ENAS service (and nasflow's evolution) emits for the table space
    of manifests/experiments/tables/enas-diabetes.yaml."""
    from trial_image.frontends import enas

    data = datasets.load("diabetes")
    frame = Frame(input_shape=data.input_shape, num_classes=0, task="regression",
                  table=Table(data.columns))
    config = ("{'num_layers': 3, 'input_sizes': [10], 'output_sizes': [1], 'embedding': {"
              "'4': {'opt_id': 4, 'opt_type': 'residual', 'opt_params': {'num_units': '128'}},"
              "'8': {'opt_id': 8, 'opt_type': 'attention', 'opt_params': {'num_heads': '4', "
              "'key_dim': '8'}}, '5': {'opt_id': 5, 'opt_type': 'glu', 'opt_params': {}}}}")
    spec = enas.to_spec("[[4], [8, 1], [5, 0, 1]]", config, frame=frame)
    assert [(n.op, n.inputs, n.params) for n in spec.nodes] == [
        ("residual", (0,), {"units": 128}), ("attention", (0, 1), {"heads": 4, "key_dim": 8}),
        ("glu", (1, 2), {"units": 64})]
    with pytest.raises(InputError, match=r"one regression output \(\[1\]\)"):
        enas.to_spec("[[4]]", config.replace("'num_layers': 3", "'num_layers': 1").replace(
            "'output_sizes': [1]", "'output_sizes': [10]"), frame=frame)
