"""The whole local story, as `make run` tells it: `nasflow run --finalize --promote --compress`
(search -> final training -> promotion -> compression), the champion loaded back and served by
`mlflow models serve`.

Real trials on digits, a real MLflow server (SQLite) on 127.0.0.1, the real registry.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from tests.conftest import ROOT
from tests.mlflow_server import served_model
from tests.test_engine_e2e import small
from trial_image.data import load

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(ROOT), "PATH": f"{os.path.dirname(sys.executable)}:/usr/bin:/bin"}


def nasflow(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600, env=ENV)


@pytest.fixture(scope="module")
def story(mlflow_server, tmp_path_factory):
    """`nasflow run --finalize --promote --compress` of a small random search: 4 trials, then the
    2 best retrained for 3 epochs, the better one trained on train + validation (for the epochs
    its selection run took to its best), promoted, and compressed to int8 (one variant, to keep
    it short)."""
    tmp = tmp_path_factory.mktemp("story")
    path = small("random-digits.yaml", "story", trials=4, epochs=2, tmp_path=tmp)
    flags = ["--tracking-uri", mlflow_server.uri, "--workdir", str(tmp / ".nasflow"),
             "--seed", "3", "--top-k", "2", "--final-epochs", "3", "--model", "story-digits"]
    run = nasflow("run", path, "--finalize", "--promote", "--compress", "--variants",
                  "int8-full", "--max-accuracy-drop", "5", *flags, cwd=tmp)
    assert run.returncode == 0, run.stderr[-3000:]
    mlflow.set_tracking_uri(mlflow_server.uri)
    return {"tmp": tmp, "path": path, "flags": flags, "out": run.stdout, "err": run.stderr,
            "client": MlflowClient(mlflow_server.uri), "uri": mlflow_server.uri}


def runs(story, role: str) -> list:
    client = story["client"]
    experiment = client.get_experiment_by_name("story")
    return client.search_runs([experiment.experiment_id],
                              f"tags.`nasflow.role` = '{role}'", order_by=["attributes.start_time"])


def models_of(story, run) -> list:
    """The models (MLflow 3 logged models) a run stored."""
    return story["client"].search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")


def test_the_final_model_is_chosen_without_the_test_split(story):
    selection, (final,) = runs(story, "selection"), runs(story, "final")
    assert len(selection) == 2
    for run in selection:
        assert run.data.params["splits"] == "train,validation"
        assert "Test-Accuracy" not in run.data.metrics and run.info.status == "FINISHED"
        assert not models_of(story, run)  # a selection run ranks its candidate; it ships nothing
    assert final.data.params["splits"] == "train+validation,test"
    assert final.info.start_time > max(r.info.end_time for r in selection)
    # the winner is the selection run with the better validation accuracy (loss on a tie)
    client = story["client"]
    best = max(selection, key=lambda r: (
        r.data.metrics["Best-Validation-Accuracy"],
        -min(m.value for m in client.get_metric_history(r.info.run_id, "Validation-Loss"))))
    assert final.data.tags["nasflow.source_trial"] == best.data.tags["nasflow.source_trial"]
    # it trains as many epochs as its selection run took to its best validation accuracy
    curves = [[m.value for m in sorted(client.get_metric_history(best.info.run_id, name),
                                       key=lambda m: m.step)]
              for name in ("Validation-Accuracy", "Validation-Loss")]
    best_epoch = 1 + min((i for i, v in enumerate(curves[0]) if v == max(curves[0])),
                         key=lambda i: curves[1][i])
    assert len(curves[0]) == 3
    assert final.data.params["epochs"] == str(best_epoch)
    assert final.data.params["lr_schedule"] == "cosine"
    assert final.data.params["augment"] == "light"


def test_the_final_run_has_the_evaluation_and_the_explanation(story):
    (final,) = runs(story, "final")
    client, run_id = story["client"], final.info.run_id
    metrics = final.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"architecture.png", "evaluation/per_class.json",
            "evaluation/confusion_matrix.png"} <= artifacts
    (model,) = models_of(story, final)
    assert model.name == "model"
    assert [i["tensor-spec"]["shape"] for i in json.loads(
        mlflow.models.get_model_info(model.model_uri).signature.inputs.to_json())] == [
        [-1, 8, 8, 1]]
    table = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/per_class.json"))
    confusion = np.asarray(table["confusion_matrix"])
    assert confusion.shape == (10, 10) and confusion.sum() == 360
    assert np.trace(confusion) / 360 == pytest.approx(metrics["Test-Accuracy"], abs=1e-6)
    # the macro figures are the confusion matrix's (rows: true, columns: predicted), derived
    # here on their own: a class never predicted has precision 0, as scikit-learn's default
    hits = np.diag(confusion).astype(float)
    predicted, true = confusion.sum(axis=0), confusion.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros(10), where=predicted > 0)
    recall = np.divide(hits, true, out=np.zeros(10), where=true > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(10),
                   where=precision + recall > 0)
    assert metrics["Test-Macro-Precision"] == pytest.approx(precision.mean(), abs=1e-6)
    assert metrics["Test-Macro-Recall"] == pytest.approx(recall.mean(), abs=1e-6)
    assert metrics["Test-Macro-F1"] == pytest.approx(f1.mean(), abs=1e-6)
    assert len(client.get_metric_history(run_id, "Training-Accuracy")) == 3  # per-epoch curve
    # the search's parent run says which decisions mattered
    (parent,) = runs(story, "experiment")
    importance = json.loads(mlflow.artifacts.load_text(
        f"runs:/{parent.info.run_id}/importance.json"))
    assert set(importance) <= {"num_blocks", "filters", "kernel_size", "pooling", "batch_norm",
                               "dense_units", "dropout", "learning_rate", "optimizer",
                               "batch_size"}
    assert sum(importance.values()) == pytest.approx(1.0)


def test_make_run_ends_with_a_loadable_champion(story):
    (final,) = runs(story, "final")
    out = story["out"]
    accuracy = final.data.metrics["Test-Accuracy"]
    assert f"test accuracy {accuracy:.4f} (best search trial story-" in out
    assert "champion: models:/story-digits@champion (version 1)" in out
    assert "mlflow models serve -m models:/story-digits@champion --env-manager local" in out
    exp_id = story["client"].get_experiment_by_name("story").experiment_id
    assert f"review it: {story['uri']}/#/experiments/{exp_id}?workflowType=machine_learning" in out
    champion = story["client"].get_model_version_by_alias("story-digits", "champion")
    assert champion.run_id == final.info.run_id
    model = mlflow.pyfunc.load_model("models:/story-digits@champion")
    data = load("digits")
    predicted = np.asarray(model.predict(data.test.x)).argmax(axis=1)
    assert float(np.mean(predicted == data.test.y)) == pytest.approx(accuracy, abs=1e-6)


# What nasflow itself prints to stderr: its progress line and its own "nasflow <command>:" lines.
OWN_LINE = re.compile(r"^(nasflow [a-z]+: |\[[#.]+\] \d+/\d+ done)")


def test_the_story_prints_only_its_own_lines(story):
    """No TensorFlow start-up, MLflow warning, progress bar or "View run" link between
    nasflow's lines (issue 22: finalize and compress printed 59-76 of them)."""
    strays = [line for line in story["err"].splitlines() if line.strip()
              and not OWN_LINE.match(line)]
    assert strays == [], strays
    assert "View run" not in story["out"] and "Created version" not in story["out"]


def test_the_story_ends_with_the_champions_int8_variant(story):
    client = story["client"]
    (variant,) = runs(story, "variant")
    accuracy = variant.data.metrics["Test-Accuracy"]
    assert f"int8-full     test accuracy {accuracy:.4f}" in story["out"]
    assert "-m models:/story-digits-variants@int8-full)" in story["out"]
    int8 = client.get_model_version_by_alias("story-digits-variants", "int8-full")
    assert int8.run_id == variant.info.run_id
    champion = client.get_model_version_by_alias("story-digits", "champion")
    # the model's own versions are its final models: its page leads with the champion
    assert champion.version == "1" and int8.version == "1"
    assert [v.version for v in client.search_model_versions("name = 'story-digits'")] == ["1"]
    assert client.get_registered_model("story-digits").tags["nasflow.variants"] == \
        "story-digits-variants"
    assert variant.data.tags["mlflow.parentRunId"] == champion.run_id


def test_the_champion_is_served_over_http(story):
    """`mlflow models serve` for the champion; raw test images posted to /invocations as the
    documented ``{"inputs": ...}`` tensor input; the answers score the logged test accuracy."""
    (final,) = runs(story, "final")
    with served_model("models:/story-digits@champion", story["uri"], ENV, story["tmp"]) as port:
        data = load("digits")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"inputs": data.test.x.tolist()}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            predictions = np.asarray(json.loads(response.read())["predictions"])
    assert predictions.shape == (360, 10)
    assert float(np.mean(predictions.argmax(axis=1) == data.test.y)) == pytest.approx(
        final.data.metrics["Test-Accuracy"], abs=1e-6)


def test_retraining_measures_the_champion_on_its_own_test_split(story):
    """A second final training (another schedule: no augmentation, which its final run keeps
    whatever epoch its selection run was best at) measures the champion on the data it is
    tested on; promotion compares those two numbers. Then `make run` again changes nothing."""
    (first,) = runs(story, "final")
    again = nasflow("finalize", "story", "--top-k", "1", "--final-epochs", "4", "--augment", "none",
                    *story["flags"][:4], "--model", "story-digits", cwd=story["tmp"])
    assert again.returncode == 0, again.stderr[-3000:]
    second = runs(story, "final")[-1]
    assert second.data.tags["nasflow.compared_with"] == "models:/story-digits/1"
    # same test split, same model: the champion scores what it scored when it was tested
    assert second.data.metrics["Champion-Test-Accuracy"] == pytest.approx(
        first.data.metrics["Test-Accuracy"], abs=1e-6)
    assert "the current champion on the same test split" in again.stdout

    promote = nasflow("promote", "story", "--model", "story-digits", "--tracking-uri",
                      story["uri"], "--output", "json", cwd=story["tmp"])
    decision = json.loads(promote.stdout)
    # the variants live in story-digits-variants: this model's version 2 is the second final
    assert decision["same_data"] is True and decision["version"] == "2"
    assert decision["champion_score"] == pytest.approx(first.data.metrics["Test-Accuracy"])
    better = second.data.metrics["Test-Accuracy"] > first.data.metrics["Test-Accuracy"]
    assert decision["decision"] == ("champion" if better else "challenger")

    rerun = nasflow("run", story["path"], "--resume", "--finalize", "--promote",
                    *story["flags"], cwd=story["tmp"])
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "run(s) finished before with the same inputs: not run again" in rerun.stderr
    assert "(already registered: no new version)" in rerun.stdout
    assert len(runs(story, "final")) == 2
    (parent,) = runs(story, "experiment")
    assert parent.info.status == "FINISHED"  # reopened by --resume, ended again


def test_finalize_and_compress_alone_print_only_their_own_lines(story):
    """Last in this module: it adds a float16 variant to the story's registry."""
    flags = story["flags"][:4] + story["flags"][6:]  # all but --seed
    finalize = nasflow("finalize", "story", *flags, cwd=story["tmp"])
    compress = nasflow("compress", "models:/story-digits@champion", "--variants", "float16",
                       "--tracking-uri", story["uri"], cwd=story["tmp"])
    for done in (finalize, compress):
        assert done.returncode == 0, done.stderr[-2000:]
        strays = [line for line in done.stderr.splitlines() if line.strip()
                  and not OWN_LINE.match(line)]
        assert strays == [], strays
        assert len(done.stdout.splitlines()) <= 8, done.stdout
