"""Wide paths: a linear map of each family's encoded inputs added to the deep path's output
(wide & deep for tables; TF-IDF of word n-grams for texts; the window, its trend and
remainder, or MiniRocket's features, for series). Each test zeroes the deep path's last layer,
so the model's output is the wide path alone, and compares it with the linear model computed by
hand, or what it can learn with a linear map of the window's."""

from __future__ import annotations

import numpy as np
import pytest

from trial_image import data as datasets
from trial_image.errors import InputError
from trial_image.spec import CandidateSpec, Frame, Head, Node, Series, Table, Training


def _deep_silenced(model, name: str) -> None:
    """The deep path's output layer ``name`` set to zeros: what is left is the wide path."""
    layer = model.get_layer(name)
    layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])


def _linear(model) -> tuple[np.ndarray, np.ndarray]:
    kernel, bias = model.get_layer("wide_linear").get_weights()
    return kernel, bias


@pytest.mark.filterwarnings("ignore:When providing `inputs` as a dict")  # the test's sub-model
def test_a_tables_wide_path_is_a_linear_model_of_its_encoded_columns():
    import keras

    from trial_image.builder import build_model

    data = datasets.load("diabetes")
    frame = Frame(data.input_shape, 0, task="regression", table=Table(data.columns),
                  head=Head(wide="linear"))
    spec = frame.candidate("hyperparameters", [Node("dense", (0,), {"units": 8})])
    model = build_model(spec, data.train)
    _deep_silenced(model, "target")
    rows = {name: data.test.columns[name][:5, None] for name, _ in data.columns}
    encoded = keras.Model(model.input, model.get_layer("columns").output)(rows)
    kernel, bias = _linear(model)
    mean, std = (model.get_layer("target_units").offset, model.get_layer("target_units").scale)
    expected = (np.asarray(encoded) @ kernel + bias) * std + mean
    np.testing.assert_allclose(model(rows).numpy(), expected, rtol=1e-5)
    # the encoded row: each numeric column normalised on the training split, and its
    # missing-value flag (all 0 here)
    age = data.train.columns["age"]
    np.testing.assert_allclose(np.asarray(encoded)[:, 0],
                               (data.test.columns["age"][:5] - age.mean()) / age.std(),
                               rtol=1e-3)
    # numbers only, so the encoded row is fixed: its map is solved as a ridge regression of
    # the normalised target (RidgeCV on the training rows), and frozen
    from sklearn.linear_model import RidgeCV

    from trial_image.builder import ridge

    train = np.asarray(keras.Model(model.input, model.get_layer("columns").output)(
        data.train.features()), "float64")
    baseline = RidgeCV(alphas=ridge.ALPHAS).fit(train, (data.train.y - mean) / std)
    assert not model.get_layer("wide_linear").trainable
    np.testing.assert_allclose(kernel[:, 0], baseline.coef_, atol=1e-4)
    np.testing.assert_allclose(bias[0], baseline.intercept_, atol=1e-4)


def test_a_tables_wide_path_reads_its_categories_one_hot_and_is_solved():
    """Wide & deep: the deep path embeds a category, the wide path reads it one-hot (a fixed
    function of the inputs), so its map is the ridge regression of the target on the numbers
    and the categories' indicators."""
    from sklearn.linear_model import RidgeCV

    from trial_image.builder import build_model, ridge
    from trial_image.data.tables import TableSplit

    rng = np.random.default_rng(2)
    columns = {"a": rng.normal(size=60).astype("float32"),
               "b": rng.choice(["x", "y", "z"], 60).astype(object)}
    effect = {"x": -2.0, "y": 0.0, "z": 3.0}
    target = columns["a"] + np.array([effect[v] for v in columns["b"]]) + rng.normal(0, .1, 60)
    train = TableSplit("train", columns, target.astype("float32"))
    table = Table((("a", "numeric"), ("b", "categorical")))
    spec = Frame((2,), 0, task="regression", table=table, head=Head(wide="linear")).candidate(
        "hyperparameters", [Node("dense", (0,), {"units": 4})])
    model = build_model(spec, train)
    linear = model.get_layer("wide_linear")
    assert not linear.trainable
    assert model.get_layer("c1_b_onehot").output.shape[-1] == 4  # x, y, z and unseen
    _deep_silenced(model, "target")
    predicted = model.predict(train.batches(64), verbose=0).ravel()
    onehot = (columns["b"][:, None] == np.array(["x", "y", "z"])).astype(float)
    rows = np.column_stack([(columns["a"] - columns["a"].mean()) / columns["a"].std(),
                            np.zeros(60), onehot])
    baseline = RidgeCV(alphas=ridge.ALPHAS).fit(rows, target)
    np.testing.assert_allclose(predicted, baseline.predict(rows), atol=1e-3)


def test_a_series_decomposed_path_is_linear_in_its_trend_and_remainder():
    from trial_image.builder import build_model

    data = datasets.load("sensor", window=datasets.Window(lookback=48))
    frame = Frame((48,), 0, task="regression", series=Series(48), head=Head(wide="decomposed"))
    spec = frame.candidate("hyperparameters", [Node("conv1d", (0,), {"filters": 4,
                                                                     "kernel": 3})])
    model = build_model(spec, data.train)
    _deep_silenced(model, "target")
    windows = data.test.x[:4].astype("float64")
    normalised = (windows - data.train.x.mean()) / data.train.x.std()
    # a centred moving average of 25 values, fewer at the edges (those inside the window)
    trend = np.stack([[row[max(0, i - 12):i + 13].mean() for i in range(48)]
                      for row in normalised])
    features = np.concatenate([trend, normalised - trend], axis=1)
    kernel, bias = _linear(model)
    scale = model.get_layer("target_units")
    expected = (features @ kernel + bias) * scale.scale + scale.offset
    np.testing.assert_allclose(model(windows.astype("float32")).numpy(), expected, rtol=1e-3)


def test_a_small_series_linear_path_is_solved_as_a_ridge_on_its_window_relative_to_the_last():
    from sklearn.linear_model import RidgeCV

    from trial_image.builder import build_model, ridge
    from trial_image.data.dataset import ArraySplit

    # 300 windows of a noisy seasonal walk: fewer than ridge.LIMIT, so the map is solved
    rng = np.random.default_rng(6)
    values = np.cumsum(rng.normal(0, 1, 324)) + 5 * np.sin(np.arange(324) * 2 * np.pi / 12)
    windows = np.lib.stride_tricks.sliding_window_view(values[:-1], 24).astype("float32")
    targets = values[24:].astype("float32")
    train = ArraySplit("train", windows, targets)
    frame = Frame((24,), 0, task="regression", series=Series(24, level="last"),
                  head=Head(wide="linear"))
    model = build_model(frame.candidate(
        "hyperparameters", [Node("conv1d", (0,), {"filters": 4, "kernel": 3})]), train)
    relative = windows.astype("float64") - windows[:, -1:]
    normalised = (relative - relative.mean()) / relative.std()
    change = targets - windows[:, -1]
    baseline = RidgeCV(alphas=ridge.ALPHAS).fit(normalised, (change - change.mean()) / change.std())
    scale = model.get_layer("target_units")
    expected = baseline.predict(normalised) * scale.scale + scale.offset + windows[:, -1]
    # the deep path starts at zero: the model is that ridge, its forecast the last value plus
    # the change it predicts, in the series' units
    np.testing.assert_allclose(model(windows).numpy().ravel(), expected, rtol=1e-4, atol=1e-3)
    assert not model.get_layer("wide_linear").trainable


def test_a_texts_wide_path_reads_tf_idf_of_words_and_word_pairs():
    import tensorflow as tf

    from trial_image.builder import build_model

    data = datasets.load("tickets")
    frame = Frame(data.input_shape, 4, table=Table(data.columns, 8, 16, 500),
                  head=Head(wide="linear"))
    spec = frame.candidate("hyperparameters", [Node("conv1d", (0,), {"filters": 4,
                                                                     "kernel": 3})])
    model = build_model(spec, data.train)
    _deep_silenced(model, "deep_logits")
    vocabulary = model.get_layer("ngrams").get_vocabulary()
    assert len(vocabulary) == 500 and any(" " in term for term in vocabulary)  # word pairs
    texts = tf.constant([["refund my invoice please"], ["zzz unseen"]])
    features = model.get_layer("ngrams")(texts).numpy()
    kernel, bias = _linear(model)
    logits = features @ kernel + bias
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model({"text": texts}).numpy(), expected, rtol=1e-4, atol=1e-6)


def test_wide_paths_are_part_of_the_candidate_and_checked_against_its_family():
    table = Frame((2,), 2, table=Table((("a", "numeric"), ("b", "categorical"))))
    nodes = [Node("dense", (0,), {"units": 4})]
    plain = table.candidate("hyperparameters", nodes)
    wide = Frame((2,), 2, table=table.table, head=Head(wide="linear")).candidate(
        "hyperparameters", nodes)
    assert wide.candidate_id != plain.candidate_id
    assert CandidateSpec.from_dict(wide.to_dict()) == wide
    # a spec written before wide paths keeps its identifier (and reads back without one)
    old = plain.to_dict()
    del old["head"]["wide"]
    # (cf2b82aabb16: what the version before wide paths computed for it)
    assert CandidateSpec.from_dict(old).candidate_id == plain.candidate_id == "cf2b82aabb16"
    with pytest.raises(InputError, match="wide path 'decomposed': tables take none, linear"):
        Frame((2,), 2, table=table.table, head=Head(wide="decomposed")).candidate(
            "hyperparameters", nodes)
    with pytest.raises(InputError, match=r"wide path 'linear': images take none \(a linear"):
        Frame((8, 8, 1), 10, training=Training(), head=Head(wide="linear")).candidate(
            "hyperparameters", [Node("conv", (0,), {"filters": 4, "kernel": 3})])


def test_minirocket_kernels_tell_frequencies_apart_where_a_linear_map_of_the_window_cannot(
        tmp_path):
    import keras
    import pandas as pd

    from trial_image.builder import build_model
    from trial_image.data.tables import TableOptions
    from trial_image.training import quiet_keras

    # sines of a period of 4 or of 16 steps at a random phase, noisy: on average every window
    # is zero at every step, so no linear map of the window can tell the periods apart
    rng = np.random.default_rng(3)
    period = rng.choice([4, 16], size=400)
    steps = np.arange(48)
    values = np.sin(2 * np.pi * steps / period[:, None] + rng.uniform(0, 2 * np.pi, (400, 1)))
    frame = pd.DataFrame(values + rng.normal(0, 0.3, values.shape),
                         columns=[f"t{i}" for i in steps])
    frame.insert(0, "period", period.astype(str))
    frame.to_csv(tmp_path / "periods.csv", index=False)
    data = datasets.load(f"series:{tmp_path / 'periods.csv'}",
                         table=TableOptions(target="period", task="classification"))

    def wide_only(wide: str) -> tuple[float, keras.Model]:
        quiet_keras()
        keras.utils.set_random_seed(0)
        spec = Frame((48,), 2, series=Series(48), head=Head(wide=wide)).candidate(
            "hyperparameters", [Node("conv1d", (0,), {"filters": 4, "kernel": 3})])
        model = build_model(spec, data.train)
        model.get_layer("deep_logits").trainable = False  # its output stays zero: wide alone
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        if model.trainable_weights:  # the kernels' map is solved as the model is built
            model.fit(data.train.x, data.train.y, epochs=10, verbose=0)
        return model.evaluate(data.test.x, data.test.y, verbose=0)[1], model

    linear, _ = wide_only("linear")
    kernels, model = wide_only("kernels")
    assert linear < 0.7 and kernels > 0.95, (linear, kernels)  # chance is 0.5
    # MiniRocket's 84 kernels at dilations 1 to 5 (up to (48 - 1) / 8), 23 biases each:
    # frozen, and the linear map after them solved on the training windows, frozen too
    dilations = [int(layer.name[9:]) for layer in model.layers
                 if layer.name.startswith("kernels_d") and layer.name[9:].isdigit()]
    assert dilations == [1, 2, 3, 4, 5]
    assert model.get_layer("kernel_features").output.shape == (None, 84 * 5 * 23)
    assert not any(layer.trainable_weights for layer in model.layers
                   if layer.name.startswith(("kernel", "wide_linear")))


def test_the_kernels_map_is_a_ridge_classifier_whose_penalty_leave_one_out_error_chose(
        monkeypatch):
    import keras
    from sklearn.linear_model import RidgeClassifierCV

    from trial_image.builder import build_model, ridge
    from trial_image.data.dataset import ArraySplit

    rng = np.random.default_rng(4)
    labels = rng.integers(0, 3, 90)
    steps = np.arange(32)
    windows = np.sin(2 * np.pi * steps / np.array([4, 7, 12])[labels][:, None]
                     + rng.uniform(0, 2 * np.pi, (90, 1))) + rng.normal(0, 0.5, (90, 32))
    train = ArraySplit("train", windows.astype("float32"), labels.astype("int32"))
    spec = Frame((32,), 3, series=Series(32), head=Head(wide="kernels")).candidate(
        "hyperparameters", [Node("conv1d", (0,), {"filters": 4, "kernel": 3})])
    model = build_model(spec, train)
    features = keras.Model(model.input, model.get_layer("kernel_standardise").output)
    rows = np.asarray(features(windows.astype("float32")), "float64")
    baseline = RidgeClassifierCV(alphas=ridge.ALPHAS).fit(rows, labels)
    kernel, bias = model.get_layer("wide_linear").get_weights()
    held_out = ridge.fit(rows, np.where(np.eye(3)[labels] > 0, 1.0, -1.0)).held_out
    scale = ridge.temperature(held_out, labels)
    assert 0.1 < scale < 100
    np.testing.assert_allclose((rows @ kernel + bias) / scale, baseline.decision_function(rows),
                               atol=2e-3)
    # the deep path beside it starts at zero, penalised
    assert not model.get_layer("deep_logits").get_weights()[0].any()
    assert model.get_layer("deep_logits").kernel.regularizer is not None
    # above ridge.LIMIT training windows the map is trained with the network instead
    monkeypatch.setattr(ridge, "LIMIT", 50)
    trained = build_model(spec, train).get_layer("wide_linear")
    assert trained.trainable and trained.trainable_weights


@pytest.mark.parametrize("rows, features", [(60, 200), (200, 12)])  # either Gram matrix
def test_a_ridge_fit_matches_scikit_learns_penalty_coefficients_and_held_out_predictions(
        rows, features):
    from sklearn.linear_model import Ridge, RidgeCV

    from trial_image.builder import ridge

    rng = np.random.default_rng(5)
    x = rng.normal(size=(rows, features))
    y = x[:, :5] @ rng.normal(size=(5, 2)) + rng.normal(0, 0.5, (rows, 2)) + 3.0
    fitted = ridge.fit(x, y)
    baseline = RidgeCV(alphas=ridge.ALPHAS).fit(x, y)
    assert fitted.alpha == baseline.alpha_
    np.testing.assert_allclose(fitted.kernel, baseline.coef_.T, atol=1e-8)
    np.testing.assert_allclose(fitted.bias, baseline.intercept_, atol=1e-8)
    # a held-out prediction is that of the fit without the row
    without = Ridge(alpha=fitted.alpha).fit(x[1:], y[1:])
    np.testing.assert_allclose(fitted.held_out[0], without.predict(x[:1])[0], atol=1e-8)


def test_the_trial_cli_refuses_a_wide_path_or_an_encoding_its_family_lacks(capsys):
    from trial_image import cli

    for flag, message in (("--wide=linear", "wide path 'linear': images take none"),
                          ("--level=last", "--level is for series; digits is image data"),
                          ("--numeric-encoding=piecewise",
                           "--numeric-encoding is for tables' numeric columns; digits is image")):
        assert cli.main(["--dataset=digits", flag, "--epochs=1"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert cli.main(["--dataset=sensor", "--numeric-encoding=piecewise", "--epochs=1"]) == 2
    assert "numeric columns; sensor is series data" in capsys.readouterr().err


def test_the_architecture_figure_shows_the_wide_path():
    from trial_image.report import architecture_figure

    spec = Frame((48,), 0, task="regression", series=Series(48),
                 head=Head(wide="decomposed")).candidate(
        "hyperparameters", [Node("rnn", (0,), {"units": 8})])
    texts = [t.get_text() for t in architecture_figure(spec, "t").axes[0].texts]
    assert "wide: linear on trend\n+ remainder, added" in texts
    assert "window of 48 values" in texts
