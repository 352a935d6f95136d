"""The DARTS trial: Katib's literal inputs, the bi-level optimisation, the genotype Katib reads,
the collapse guard, and the derived network as a normal MLflow model."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient

from pipeline.engine.metrics_collector import parse_text
from tests.conftest import ROOT, run_trial, wire_example
from trial_image.cli import main
from trial_image.darts.settings import (
    KATIB_DEFAULTS,
    parse_num_layers,
    parse_search_space,
    parse_settings,
)
from trial_image.data.dataset import ArraySplit
from trial_image.frontends.genotype import format_genotype, parse_genotype

KATIB_FILTER = r"([\w-]+)=(Genotype.*)"  # darts-cpu.yaml's metricsFormat


def collected(stdout: str, names: list[str], filters: list[str]) -> dict[str, list[str]]:
    """What Katib's StdOut collector records from ``stdout``, per metric, in order."""
    values: dict[str, list[str]] = {name: [] for name in names}
    for observation in parse_text(stdout.splitlines(), names, filters):
        values[observation.name].append(observation.value)
    return values
DARTS_CPU = {k: wire_example(f"darts-cpu.yaml {k}")
             for k in ("algorithm-settings", "search-space", "num-layers")}


# ---- Katib's literal formats -----------------------------------------------------------------

def test_katib_settings_strings_and_defaults():
    settings = parse_settings(DARTS_CPU["algorithm-settings"])
    assert (settings.num_epochs, settings.num_nodes, settings.init_channels,
            settings.stem_multiplier) == (1, 1, 1, 1)  # user values, sent as strings
    assert (settings.w_lr, settings.batch_size, settings.alpha_weight_decay) == (0.025, 128, 1e-3)
    assert settings.unrolled is False and settings.max_skip_connections == 2
    # with the template's surrounding double quotes (exec form: nobody strips them)
    assert parse_settings(f'"{DARTS_CPU["algorithm-settings"]}"') == settings
    everything = parse_settings("{}")
    assert {k: getattr(everything, k) for k in KATIB_DEFAULTS} == KATIB_DEFAULTS
    assert parse_settings("{'unrolled': 'true', 'max_skip_connections': 'None'}").unrolled
    assert parse_search_space(DARTS_CPU["search-space"]) == ("max_pooling_3x3", "none")
    assert parse_search_space('"' + wire_example("darts-gpu.yaml search-space") + '"')[-2:] == (
        "skip_connection", "none")
    assert parse_num_layers('"1"') == parse_num_layers(DARTS_CPU["num-layers"]) == 1


@pytest.mark.parametrize("settings,space,message", [
    ("{'num_epoch': '1'}", "['max_pooling_3x3']", "unknown setting(s) num_epoch"),
    ("{'batch_size': None}", "['max_pooling_3x3']", "batch_size cannot be None"),
    ("{'num_nodes': '0'}", "['max_pooling_3x3']", "num_nodes must be >= 1"),
    ("{'w_lr': 'fast'}", "['max_pooling_3x3']", "w_lr: expected a number"),
    ("{}", "['max_pooling_5x5']", "unknown primitive(s) max_pooling_5x5"),
    ("{}", "['none']", "needs at least one primitive besides 'none'"),
])
def test_bad_input_is_one_line_and_exit_2(settings, space, message, capsys):
    code = main(["darts", f"--algorithm-settings={settings}", f"--search-space={space}",
                 "--num-layers=1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1


def test_genotype_format_is_katibs():
    katib = ("Genotype(normal=[[('max_pooling_3x3',1),('max_pooling_3x3',0)]],normal_concat="
             "range(2,3),reduce=[[('max_pooling_3x3',0),('max_pooling_3x3',1)]],reduce_concat="
             "range(2,3))")  # docs/katib.md §2, printed by Katib's own darts trial
    assert format_genotype(parse_genotype(katib)) == katib


# ---- the super-net and the bi-level optimisation ---------------------------------------------

@pytest.fixture(scope="module")
def small_search():
    from trial_image import data as datasets
    from trial_image.darts.run import halves
    from trial_image.darts.search import BilevelSearch
    from trial_image.darts.supernet import SupernetShape, build_supernet
    from trial_image.trial_run import prepare_tensorflow

    data = datasets.load("digits")
    prepare_tensorflow(0)
    shape = SupernetShape(parse_search_space(
        "['separable_convolution_3x3', 'max_pooling_3x3', 'skip_connection']"), 2)

    def make(unrolled: bool, warmup: int = 0):
        settings = parse_settings(f"{{'num_nodes': '2', 'init_channels': '4', 'batch_size': "
                                  f"'32', 'stem_multiplier': '1', 'unrolled': '{unrolled}', "
                                  f"'warmup_epochs': '{warmup}'}}")
        model = build_supernet(shape, input_shape=data.input_shape,
                               num_classes=data.num_classes, input_scale=data.scale,
                               num_layers=2, init_channels=4, stem_multiplier=1)
        return BilevelSearch(model, shape, settings, seed=0)

    return make, data, halves(data, 32, 0)


def _values(variables):
    return [v.numpy().copy() for v in variables]


def _changed(before, variables):
    return [not np.array_equal(b, v.numpy()) for b, v in zip(before, variables, strict=True)]


@pytest.mark.parametrize("unrolled", [False, True])
def test_alpha_steps_move_only_alpha_and_weight_steps_only_weights(small_search, unrolled):
    make, _, (weight_half, alpha_half, _) = small_search
    search = make(unrolled)
    assert not {id(v) for v in search.alphas} & {id(v) for v in search.model.trainable_variables}
    (xw, yw), (xa, ya) = next(iter(weight_half)), next(iter(alpha_half))
    alphas, weights = _values(search.alphas), _values(search.weights)
    if unrolled:
        search.alpha_step(xa, ya, xw, yw)
    else:
        search.alpha_step(xa, ya)
    # the reduction cell is layer 1 of 2: both α matrices learn
    assert all(_changed(alphas, search.alphas))
    assert not any(_changed(weights, search.weights))  # unrolled: w restored exactly
    alphas, weights = _values(search.alphas), _values(search.weights)
    search.weight_step(xw, yw)
    assert not any(_changed(alphas, search.alphas))
    assert sum(_changed(weights, search.weights)) > 0.9 * len(weights)


def test_each_step_sees_only_its_half(small_search, monkeypatch):
    make, data, (weight_half, alpha_half, batch) = small_search
    search = make(False)
    head = ArraySplit("validation", data.validation.x[:64], data.validation.y[:64])
    # each pass reshuffles and drops a different remainder: five passes cover each half
    rows = {name: {x.tobytes() for _ in range(5) for x, _ in ds.unbatch().as_numpy_iterator()}
            for name, ds in (("w", weight_half), ("alpha", alpha_half))}
    assert not rows["w"] & rows["alpha"]
    assert len(rows["w"]) + len(rows["alpha"]) >= len(data.train.x) - 2 * batch
    seen = {"w": set(), "alpha": set()}
    alpha_step, weight_step = search.alpha_step, search.weight_step

    def record(name, step):
        def wrapped(x, y, *rest):
            seen[name].update(row.tobytes() for row in x.numpy())
            return step(x, y, *rest)
        return wrapped

    monkeypatch.setattr(search, "alpha_step", record("alpha", alpha_step))
    monkeypatch.setattr(search, "weight_step", record("w", weight_step))
    search.epoch(0, weight_half, alpha_half, head)
    assert seen["alpha"] <= rows["alpha"] and seen["w"] <= rows["w"]
    steps = len(data.train.x) // 2 // batch
    assert len(seen["alpha"]) == len(seen["w"]) == steps * batch


def test_warmup_epochs_train_the_weights_only(small_search):
    make, data, (weight_half, alpha_half, _) = small_search
    search = make(False, warmup=1)
    head = ArraySplit("validation", data.validation.x[:64], data.validation.y[:64])
    alphas, weights = _values(search.alphas), _values(search.weights)
    search.epoch(0, weight_half, alpha_half, head)
    assert not any(_changed(alphas, search.alphas)) and all(_changed(weights, search.weights))
    search.epoch(1, weight_half, alpha_half, head)
    assert all(_changed(alphas, search.alphas))


def test_genotype_keeps_the_two_strongest_inputs_and_never_none(small_search):
    make, _, _ = small_search
    search = make(False)
    # primitives: sep3, max3, skip, none; normal cell edges: node0 <- 0, 1; node1 <- 0, 1, 2
    normal = np.full((5, 4), -5.0)
    normal[0, 3] = 9.0  # node0 <- 0: `none` strongest, so its best real op counts: max3
    normal[0, 1] = 1.0
    normal[1, 0] = 2.0  # node0 <- 1: sep3
    normal[2, 2] = 0.5  # node1 <- 0: skip, weak
    normal[3, 1] = 3.0  # node1 <- 1: max3, strong
    normal[4, 0] = 4.0  # node1 <- 2: sep3, strongest
    search.alpha_normal.assign(normal)
    genotype = search.genotype()
    assert genotype["normal"] == [[("separable_convolution_3x3", 1), ("max_pooling_3x3", 0)],
                                  [("separable_convolution_3x3", 2), ("max_pooling_3x3", 1)]]
    assert genotype["normal_concat"] == [2, 3]
    assert parse_genotype(format_genotype(genotype))["normal"] == genotype["normal"]


def test_supernet_batch_norms_have_no_affine_parameters_but_the_stem(small_search):
    """DARTS disables BN's learnable scale and shift in the search, so no candidate operation
    can rescale its output against the mixing weights; the derived network keeps them."""
    import keras

    from trial_image.builder import build_model
    from trial_image.frontends.genotype import to_spec
    from trial_image.spec import Frame

    make, data, _ = small_search
    search = make(False)
    norms = [layer for layer in search.model.layers
             if isinstance(layer, keras.layers.BatchNormalization)]
    affine = [layer.name for layer in norms if layer.center or layer.scale]
    assert affine == ["stem_bn"] and len(norms) > 20
    genotype = format_genotype(search.genotype())
    derived = build_model(to_spec(genotype, num_layers=2, init_channels=4, stem_multiplier=1,
                                  frame=Frame(data.input_shape, data.num_classes, data.scale)))
    assert all(layer.center and layer.scale for layer in derived.layers
               if isinstance(layer, keras.layers.BatchNormalization))


def test_cosine_learning_rate(small_search):
    make, _, _ = small_search
    search = make(False)
    s = search.settings
    assert search.learning_rate(0) == pytest.approx(s.w_lr)
    assert search.learning_rate(s.num_epochs) == pytest.approx(s.w_lr_min)
    assert search.learning_rate(s.num_epochs / 2) == pytest.approx((s.w_lr + s.w_lr_min) / 2)


# ---- the whole trial -------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("quoted", [True, False], ids=["template-quotes", "sh-unquoted"])
def test_katib_darts_cpu_trial_prints_a_genotype_katib_reads(mlflow_server, tmp_path, quoted):
    q = '"' if quoted else ""
    result = run_trial(
        ["darts", *(f"--{k}={q}{v}{q}" for k, v in DARTS_CPU.items()), "--epochs=2",
         "--experiment-name=darts-cpu", f"--trial-name=darts-cpu-{quoted}", "--algorithm=darts"],
        tmp_path, mlflow_server.uri)
    assert result.returncode == 0, result.stderr[-3000:]
    genotype_lines = [line for line in result.stdout.splitlines() if "Genotype(" in line]
    assert genotype_lines and all(" " not in line.split(" ", 1)[1] for line in genotype_lines)
    # what Katib's StdOut collector makes of it, with darts-cpu.yaml's filter
    value = collected(result.stdout, ["Best-Genotype"], [KATIB_FILTER])["Best-Genotype"][-1]
    assert re.fullmatch(KATIB_FILTER, f"Best-Genotype={value}")
    genotype = parse_genotype(value)
    for kind in ("normal", "reduce"):  # one node, fed by both cell inputs
        assert sorted(genotype[kind][0]) == [("max_pooling_3x3", 0), ("max_pooling_3x3", 1)]

    client = MlflowClient(mlflow_server.uri)
    (run,) = client.search_runs([client.get_experiment_by_name("darts-cpu").experiment_id],
                                f"tags.`katib.trial` = 'darts-cpu-{quoted}'")
    assert run.info.status == "FINISHED"
    assert run.data.tags["nasflow.frontend"] == "darts"
    assert run.data.tags["nasflow.genotype"] == value
    metrics = run.data.metrics
    assert {"Search-Validation-Accuracy", "Skip-Share", "Test-Accuracy",
            "Genotype-Skip-Share", "Search-Epochs"} <= set(metrics)
    assert metrics["Search-Epochs"] == 1 and metrics["Genotype-Skip-Share"] == 0.0
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "darts")}
    assert {"darts/epoch_001_alphas.png", "darts/epoch_001_alphas.json",
            "darts/epoch_001_genotype.txt", "darts/best_genotype.txt"} <= artifacts
    path = client.download_artifacts(run.info.run_id, "darts/epoch_001_alphas.json",
                                     str(tmp_path))
    alphas = json.loads(Path(path).read_text())
    assert alphas["primitives"] == ["max_pooling_3x3", "none"]
    assert np.allclose(np.sum(alphas["normal"], axis=1), 1.0, atol=1e-4)
    assert "candidate_spec.json" in {a.path for a in client.list_artifacts(run.info.run_id)}
    import mlflow

    mlflow.set_tracking_uri(mlflow_server.uri)
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert np.asarray(model.predict(np.zeros((2, 8, 8, 1), "float32"))).shape == (2, 10)


@pytest.mark.slow
def test_the_derived_network_trains_as_a_fresh_genotype_trial_with_its_seed(mlflow_server,
                                                                            tmp_path):
    """After the search the trial reseeds: its model is the one `--genotype=... --seed=S`
    gives, whatever random state the search left. A text seed (the trial name) is hashed."""
    seed = "darts-digits-3f9c2a1b"
    darts = run_trial(["darts", *(f"--{k}={v}" for k, v in DARTS_CPU.items()), "--epochs=3",
                       f"--seed={seed}", "--experiment-name=reseed"], tmp_path,
                      mlflow_server.uri)
    assert darts.returncode == 0, darts.stderr[-3000:]
    genotype = collected(darts.stdout, ["Best-Genotype"], [KATIB_FILTER])["Best-Genotype"][-1]
    fresh = run_trial([f"--genotype={genotype}", "--num-layers=1", "--init-channels=1",
                       "--stem-multiplier=1", "--epochs=3", f"--seed={seed}",
                       "--experiment-name=reseed"], tmp_path, mlflow_server.uri)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    names = ["Validation-Accuracy", "Training-Loss", "Test-Accuracy"]
    derived, alone = collected(darts.stdout, names, []), collected(fresh.stdout, names, [])
    assert derived == alone
    assert [len(alone[name]) for name in names] == [3, 3, 1]  # every name really printed


def test_seed_is_a_number_or_any_text():
    from trial_image.cli import seed

    assert seed("7") == 7 and seed(" 42 ") == 42
    assert seed("darts-digits-3f9c2a1b") == seed("darts-digits-3f9c2a1b") != seed(
        "darts-digits-70aa01c2")
    assert 0 <= seed("darts-digits-3f9c2a1b") < 2**31


def _cell(skips: int) -> dict:
    """A 3-node genotype whose normal cell has ``skips`` skip connections."""
    ops = ["skip_connection"] * skips + ["max_pooling_3x3"] * (6 - skips)
    normal = [[(ops[2 * n], n), (ops[2 * n + 1], n + 1)] for n in range(3)]
    return {"normal": normal, "normal_concat": [2, 3, 4], "reduce": normal,
            "reduce_concat": [2, 3, 4]}


def test_collapse_guard():
    from trial_image.darts.search import CollapseGuard

    guard = CollapseGuard(limit=2, warmup_epochs=2)
    # warm-up epochs (α still random) never stop the search nor serve as the fallback
    assert guard.step(0, _cell(4)) and guard.step(1, _cell(5))
    assert guard.step(2, _cell(4))  # trained, over the limit, but nothing to fall back on
    assert guard.step(3, _cell(2)) and guard.kept == (3, _cell(2))
    assert guard.step(4, _cell(1))
    assert not guard.step(5, _cell(3))  # collapse: stop, keep epoch 4
    assert guard.kept == (4, _cell(1))
    assert guard.reason == "collapse guard: 3 skip connections > max_skip_connections 2 at epoch 6"
    off = CollapseGuard(limit=None, warmup_epochs=0)
    assert all(off.step(e, _cell(6)) for e in range(5)) and off.kept == (4, _cell(6))
    assert off.reason == "all epochs"


def test_darts_manifests_run_unchanged_on_both_engines(capsys):
    """Valid, and no "not supported by nasflow run" or "by Katib" note."""
    from pipeline.cli import main as nasflow

    for path in (ROOT / "manifests/experiments/darts-digits.yaml",
                 ROOT / "manifests/experiments/cifar10/darts-cifar10.yaml"):
        assert nasflow(["validate", str(path)]) == 0
        assert capsys.readouterr().out.splitlines() == [f"{path}: valid"]


@pytest.mark.slow
def test_darts_digits_on_the_embedded_engine_then_promoted(mlflow_server, tmp_path):
    """darts-digits.yaml (shortened, two searches) through `nasflow run`: each trial searches
    from its own seed, the objective picks the derived network that validates best, and
    `nasflow promote` registers that one without further flags."""
    import subprocess
    import sys
    import zlib

    import mlflow
    import yaml

    from tests.test_engine_e2e import small

    path = Path(small("darts-digits.yaml", "darts-e2e", trials=2, epochs=2, tmp_path=tmp_path))
    doc = yaml.safe_load(path.read_text())
    doc["spec"]["algorithm"]["algorithmSettings"] = [
        {"name": "num_epochs", "value": "2"}, {"name": "num_nodes", "value": "2"},
        {"name": "init_channels", "value": "4"}, {"name": "batch_size", "value": "64"}]
    doc["spec"]["nasConfig"]["graphConfig"]["numLayers"] = 2
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    run = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--tracking-uri", mlflow_server.uri,
         "--workdir", str(tmp_path / ".nasflow"), "--output", "json"], cwd=tmp_path,
        capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    status = json.loads(run.stdout)
    assert status["conditions"][-1]["reason"] == "ExperimentMaxTrialsReached"
    assert status["trialsSucceeded"] == 2

    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("darts-e2e").experiment_id],
                              "tags.`nasflow.frontend` = 'darts'")
    by_trial = {r.data.tags["katib.trial"]: r for r in runs}
    assert len(by_trial) == 2
    # the seed is the trial's name: two searches from different starting points
    for trial, r in by_trial.items():
        assert int(r.data.params["seed"]) == zlib.crc32(trial.encode()) & 0x7FFFFFFF
    best = max(by_trial, key=lambda t: by_trial[t].data.metrics["Best-Validation-Accuracy"])
    optimal = status["currentOptimalTrial"]
    assert optimal["bestTrialName"] == best
    metrics = {m["name"]: m for m in optimal["observation"]["metrics"]}
    assert float(metrics["Validation-Accuracy"]["max"]) == pytest.approx(
        by_trial[best].data.metrics["Best-Validation-Accuracy"])
    assert parse_genotype(metrics["Best-Genotype"]["latest"]) == parse_genotype(
        by_trial[best].data.tags["nasflow.genotype"])
    assert float(metrics["Test-Accuracy"]["latest"]) == pytest.approx(
        by_trial[best].data.metrics["Test-Accuracy"])

    promote = subprocess.run(
        [sys.executable, "-m", "pipeline", "promote", "darts-e2e", "--model", "darts-digits",
         "--tracking-uri", mlflow_server.uri, "--workdir", str(tmp_path / ".nasflow"),
         "--output", "json"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=env)
    assert promote.returncode == 0, promote.stderr[-3000:]
    decision = json.loads(promote.stdout)
    assert decision["decision"] == "champion"
    mlflow.set_tracking_uri(mlflow_server.uri)
    champion = client.get_model_version_by_alias("darts-digits", "champion")
    assert champion.run_id == by_trial[best].info.run_id
    assert champion.tags["nasflow.objective.metric"] == "Validation-Accuracy"
    model = mlflow.pyfunc.load_model("models:/darts-digits@champion")
    assert np.asarray(model.predict(np.zeros((3, 8, 8, 1), "float32"))).shape == (3, 10)
