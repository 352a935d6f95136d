"""Compression: LiteRT variants, pruning, distillation, each measured with itself, logged under
the source model's run and registered within the accuracy budget, against a real MLflow server."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import keras
import mlflow
import numpy as np
import pytest
from keras import layers
from mlflow import MlflowClient

from pipeline.cli import main
from pipeline.compression import register_within_budget
from pipeline.promotion.optimal_trial import OptimalTrial
from pipeline.promotion.registry import Registry
from tests.conftest import run_trial
from trial_image import data as datasets
from trial_image.compress import litert
from trial_image.compress.distillation import Distiller, distill, distillation_loss, soften
from trial_image.compress.pruning import MagnitudePruning, compressed_size, sparsity
from trial_image.compress.run import int8_full
from trial_image.tasks import CLASSIFICATION

pytestmark = pytest.mark.slow


def tiny_model() -> keras.Model:
    x = keras.Input((8, 8, 1), name="image")
    y = layers.Rescaling(1 / 16)(x)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(y)
    y = layers.Conv2D(16, 3, padding="same", activation="relu")(y)
    y = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling2D()(y))
    return keras.Model(x, y)


# ---- the pieces ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained():
    """Digits and the tiny model trained on them for 3 epochs."""
    data = datasets.load("digits")
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data.train.x, data.train.y, epochs=3, verbose=0)
    return data, model


def test_full_integer_model_is_int8_inside_and_takes_raw_images(trained):
    data, model = trained
    content = litert.convert(model, "int8-full", data.train.x[:100])
    interpreter = litert.LiteRT(content)
    assert interpreter.input["dtype"] == np.int8 and interpreter.output["dtype"] == np.int8
    assert "int8" in interpreter.tensor_types() and "float32" not in interpreter.tensor_types()
    # raw images in, probabilities out, close to the float model's
    ours = interpreter.predict(data.test.x)
    theirs = model.predict(data.test.x, verbose=0)
    assert ours.shape == theirs.shape
    assert np.mean(ours.argmax(1) == theirs.argmax(1)) > 0.95
    assert "float16" in litert.LiteRT(litert.convert(model, "float16")).tensor_types()


def kernel_scales(content: bytes) -> list[int]:
    """How many quantization scales each convolution kernel of a file has."""
    details = litert.LiteRT(content).interpreter.get_tensor_details()
    return [len(t["quantization_parameters"]["scales"]) for t in details
            if t["dtype"] == np.int8 and len(t["shape"]) == 4 and t["shape"][0] == 16]


def test_full_integer_int8_has_one_weight_scale_per_tensor_unless_that_costs_the_budget(trained):
    data, model = trained
    accuracy = float(np.mean(model.predict(data.test.x, verbose=0).argmax(1) == data.test.y))
    measured = []

    def accuracy_of(content: bytes) -> float:
        measured.append(float(np.mean(litert.LiteRT(content).predict(data.test.x).argmax(1)
                                      == data.test.y)))
        return measured[-1]

    source = SimpleNamespace(model=model, score=accuracy, score_of=accuracy_of,
                             task=CLASSIFICATION)
    small, extra = int8_full(source, data.train.x[:100], max_drop=5.0)
    assert kernel_scales(small) == [1, 1]
    assert extra == {"Per-Channel-Scales": 0.0, "Per-Tensor-Test-Accuracy": measured[0]}
    # a budget the per-tensor file cannot meet: one scale per output channel instead
    large, extra = int8_full(source, data.train.x[:100], max_drop=(accuracy - measured[0]) * 100
                             - 0.01)
    assert kernel_scales(large) == [16, 16]
    assert extra["Per-Channel-Scales"] == 1.0 and len(large) - len(small) >= 12 * 60
    # (16 - 1) scales and zero points of two kernels and their biases, 12 bytes each


def test_pruning_follows_the_polynomial_schedule_and_keeps_pruned_weights_at_zero():
    schedule = MagnitudePruning(0.8, steps=100)
    assert schedule.scheduled(0) == 0
    assert schedule.scheduled(50) == pytest.approx(0.8 * (1 - 0.5 ** 3))  # 0.7
    assert schedule.scheduled(100) == schedule.scheduled(500) == pytest.approx(0.8)
    data = datasets.load("digits")
    keras.utils.set_random_seed(0)
    model = tiny_model()
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data.train.x, data.train.y, epochs=4, batch_size=64, verbose=0,
              callbacks=[MagnitudePruning(0.8, steps=40, frequency=5)])
    assert sparsity(model) == pytest.approx(0.8, abs=0.01)
    dense = litert.convert(tiny_model(), "float32")
    pruned = litert.convert(model, "float32")
    assert compressed_size(pruned) < 0.5 * compressed_size(dense)  # the zeros are a real saving


def test_distillation_loss_and_the_online_teacher():
    labels = np.array([0, 2])
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype="float32")
    student = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]], dtype="float32")
    hard = -np.log(student[[0, 1], labels])
    assert np.allclose(distillation_loss(labels, student, None, 2.0, 1.0), hard, atol=1e-6)
    soft_t, soft_s = np.asarray(soften(teacher, 2.0)), np.asarray(soften(student, 2.0))
    kd = np.sum(soft_t * np.log(soft_t / soft_s), axis=1)
    assert np.allclose(distillation_loss(labels, student, teacher, 2.0, 0.25),
                       0.25 * hard + 0.75 * 4 * kd, rtol=1e-4)
    # softening at T = 1 changes nothing; higher T flattens
    assert np.allclose(np.asarray(soften(teacher, 1.0)), teacher, atol=1e-6)
    assert np.asarray(soften(teacher, 4.0))[0, 0] < 0.7
    # the teacher is asked on the batch the student sees, and never trained
    data = datasets.load("digits")
    keras.utils.set_random_seed(0)
    frozen = tiny_model()
    before = [w.copy() for w in frozen.get_weights()]
    initial = []

    def student_builder() -> keras.Model:
        built = tiny_model()
        initial.append([w.copy() for w in built.get_weights()])
        return built

    from trial_image.data.dataset import ArraySplit

    sample = ArraySplit("train", data.train.x[:128], data.train.y[:128])
    student = distill(student_builder, frozen, sample, temperature=4.0, alpha=0.5, epochs=1,
                      learning_rate=1e-3)
    assert all(np.array_equal(a, b) for a, b in zip(before, frozen.get_weights(), strict=True))
    assert not frozen.trainable and student.trainable
    assert not all(np.array_equal(a, b) for a, b in zip(initial[0], student.get_weights(),
                                                        strict=True))  # trained
    distill(student_builder, frozen, sample, temperature=4.0, alpha=0.5, epochs=1,
            learning_rate=1e-3)
    # same seed, same initial student (the same result too, where ops are deterministic, as
    # in the compress process: not asserted here, in a process that is not)
    assert all(np.array_equal(a, b) for a, b in zip(*initial, strict=True))
    assert Distiller(tiny_model(), None, 4.0, 0.5).alpha == 1.0  # no teacher: labels alone


# ---- the stage against a real MLflow server --------------------------------------------------


@pytest.fixture(scope="module")
def champion(mlflow_server, tmp_path_factory):
    """A final model promoted champion, and a smaller trial of the same search (the student)."""
    tmp = tmp_path_factory.mktemp("compress")
    experiment = f"compress-{uuid.uuid4().hex[:6]}"
    for name, flags in (("final", ["--num-blocks=2", "--filters=32", "--role=final"]),
                        ("small", ["--num-blocks=1", "--filters=8"])):
        result = run_trial([*flags, "--epochs=12", "--lr=0.005", f"--experiment-name={experiment}",
                            f"--trial-name={experiment}-{name}", "--namespace=default"],
                           tmp, mlflow_server.uri)
        assert result.returncode == 0, result.stderr[-2000:]
    registry = Registry(mlflow_server.uri, experiment, 5)
    decision = registry.promote(OptimalTrial(experiment, "default", f"{experiment}-final",
                                             "Validation-Accuracy", True, None, "random"),
                                metric="Test-Accuracy")
    assert decision.decision == "champion"
    return experiment


def test_compress_registers_variants_measured_with_themselves(mlflow_server, champion, capsys):
    uri = mlflow_server.uri
    code = main(["compress", f"models:/{champion}@champion", "--variants",
                 "float32,int8-full,pruned-50,distilled", "--tracking-uri", uri,
                 "--max-accuracy-drop", "-100", "--temperature", "2", "--alpha", "0.25",
                 "--distill-epochs", "5", "--output", "json"])
    assert code == 0, capsys.readouterr().err
    results = {r["variant"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(results) == {"float32", "int8-full", "pruned-50", "distilled"}
    client = MlflowClient(uri)
    # a budget nobody meets: every variant logged, none registered, each run says why
    assert all(r["version"] is None for r in results.values())
    for r in results.values():
        assert client.get_run(r["run_id"]).data.tags["nasflow.reason"].startswith(
            "accuracy drop")
    source = client.get_model_version_by_alias(champion, "champion")
    assert source.version == "1"
    data = datasets.load("digits")
    for variant, r in results.items():
        run = client.get_run(r["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == source.run_id  # nested under the source
        assert run.data.tags["nasflow.variant"] == variant
        assert run.data.metrics["Interpreter-Threads"] == 1
        # the pyfunc model takes raw images and reproduces the logged accuracy
        model = mlflow.pyfunc.load_model(f"runs:/{r['run_id']}/model")
        predicted = np.asarray(model.predict(data.test.x.astype("float32"))).argmax(1)
        assert np.mean(predicted == data.test.y) == pytest.approx(
            run.data.metrics["Test-Accuracy"])
    sizes = {v: r["size"] for v, r in results.items()}
    assert sizes["int8-full"] <= 0.4 * sizes["float32"]
    student = client.get_run(results["distilled"]["run_id"]).data.metrics["Parameter-Count"]
    teacher = client.get_run(source.run_id).data.metrics["Parameter-Count"]
    assert student <= 0.5 * teacher
    distilled = client.get_run(results["distilled"]["run_id"]).data.metrics
    assert (distilled["Temperature"], distilled["Alpha"]) == (2, 0.25)  # the flags reach it
    # a budget per-kernel scales cannot meet: int8-full fell back to per-channel ones
    assert client.get_run(results["int8-full"]["run_id"]).data.metrics[
        "Per-Channel-Scales"] == 1
    int8 = client.download_artifacts(results["int8-full"]["run_id"], "int8-full.tflite")
    assert "int8" in litert.LiteRT(Path(int8).read_bytes()).tensor_types()

    # within a budget: registered in the model's variants model, the model and champion untouched
    registry = Registry(uri, champion, 5)
    registered = register_within_budget(registry, source, 100, 5)
    assert all(r.version for r in registered)
    assert client.get_registered_model(champion).aliases == {"champion": "1"}
    for r in registered:
        version = client.get_model_version_by_alias(f"{champion}-variants", r.variant)
        assert version.tags["nasflow.variant"] == r.variant
        assert version.tags["nasflow.source_model"] == f"models:/{champion}/1"
    # compressing again makes nothing new: every variant of version 1 exists already
    assert main(["compress", f"models:/{champion}@champion", "--variants", "float32,int8-full",
                 "--tracking-uri", uri, "--output", "json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {r["run_id"] for r in again} <= {r["run_id"] for r in results.values()}
    assert client.get_registered_model(champion).aliases["champion"] == "1"


def test_compress_refuses_a_uri_that_is_not_a_model(mlflow_server, capsys):
    assert main(["compress", "runs:/abc/model", "--tracking-uri", mlflow_server.uri]) == 2
    assert "expected models:/NAME@ALIAS" in capsys.readouterr().err


def test_a_version_without_a_model_fails_in_one_line_without_library_noise(mlflow_server,
                                                                            tmp_path, capsys,
                                                                            monkeypatch):
    """Issue 21 finding 6: TensorFlow's start-up lines came before the reason. The compression
    process's output goes to <workdir>/compress.log; the terminal gets what nasflow says."""
    monkeypatch.chdir(tmp_path)
    client = MlflowClient(mlflow_server.uri)
    name = f"no-model-{uuid.uuid4().hex[:8]}"
    exp_id = client.create_experiment(name)
    run = client.create_run(exp_id, tags={"katib.experiment": name, "katib.trial": "t"})
    client.set_terminated(run.info.run_id, "FINISHED")
    client.create_registered_model(name)
    client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id)
    capsys.readouterr()
    code = main(["compress", f"models:/{name}/1", "--tracking-uri", mlflow_server.uri,
                 "--variants", "float16", "--mlflow-retry-seconds", "2"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2 and lines[-1].startswith("nasflow compress: compress failed: "
                                                    f"loading models:/{name}/1 failed"), err
    assert "its output is in .nasflow/compress.log" in lines[-1]
    assert not any(noise in err for noise in ("tensorflow", "oneDNN", "cuda", "absl",
                                              "WARNING", "Traceback")), err
    assert "compress failed" in (tmp_path / ".nasflow" / "compress.log").read_text()
