"""The one Keras builder: :class:`CandidateSpec` in, compile-ready ``keras.Model`` out.

The spec's family chooses the inputs and the operations its nodes may use (images:
:mod:`.images`; tables: :mod:`.tables`; texts and series: :mod:`.sequences`); its task chooses
the output: class probabilities, or one number in the target's units (a regression's last layer
undoes the normalisation of the training split's targets, so the network learns at unit scale
and serves in the user's units; a series read relative to its last value forecasts the change
from it). A head with a wide path adds a linear map of the family's encoded inputs to the deep
path's logits (or number) before the softmax (or the units); after fixed features (a series'
window, trend and remainder, or MiniRocket's; a text's TF-IDF; a table's numbers and one-hot
categories) that map is solved in closed form where the training split allows (:mod:`.ridge`),
and frozen. Every family but images, and every regression, adapts its first or last layers on
``train``, the training split, never on the others.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import keras
import numpy as np
from keras import layers

from trial_image.builder import images, ridge, sequences, tables
from trial_image.builder.images import apply_node, batch_norm, merge_inputs
from trial_image.errors import InputError
from trial_image.spec import CandidateSpec

__all__ = ["OUTPUT_LAYERS", "apply_node", "batch_norm", "build_model", "merge_inputs",
           "multiply_adds"]
# The layers whose every weight reaches an output (compression keeps them whole)
OUTPUT_LAYERS = frozenset({"classes", "deep_logits", "wide_linear", "target"})
# The L2 penalty on the deep path's output layer beside a solved wide path. That path fits the
# training rows almost exactly, so what is left for the deep path is mostly noise, on which
# Adam's normalised steps still move it: on ArrowHead (177 series) the deep path of a
# kernels candidate cost 3 test series of 34 in 50 epochs without it, none in 100 with it
# (docs/benchmarks.md)
DEEP_PENALTY = 0.01


def build_model(spec: CandidateSpec, train: Any = None) -> keras.Model:
    family = spec.family
    if (family.adapts or spec.task == "regression") and train is None:
        raise InputError(f"a {family} {spec.task} model is adapted on its training split")
    inputs, x, apply, wide, level, rows = ENCODERS[family.name](spec, train)
    scale = None if spec.task == "classification" else target_scale(train, level is not None)
    solved = None if rows is None else _solved(spec, train, rows, scale, level is not None)
    outputs = [x]
    for index, node in enumerate(spec.nodes, start=1):
        merged = merge_inputs([outputs[i] for i in node.inputs], node.merge, f"n{index}")
        outputs.append(apply(node, merged, f"n{index}"))
    x = outputs[-1]
    if family.pooling == "2d":
        # Nodes end in a batch norm (pre-activation, ReLU-Conv-BN): the head rectifies before
        # it pools, as pre-activation ResNets end in BN-ReLU (docs/benchmarks.md, "Figures
        # behind the code").
        x = layers.ReLU(name="head_relu")(x)
        x = layers.GlobalAveragePooling2D(name="head_pool")(x)
    elif family.pooling == "1d":
        x = layers.GlobalAveragePooling1D(name="head_pool")(x)
    if spec.head.dense_units:
        x = layers.Dense(spec.head.dense_units, activation="relu", name="head_dense")(x)
    if spec.head.dropout:
        x = layers.Dropout(spec.head.dropout, name="head_dropout")(x)
    # with a wide path the model starts as its linear model: the deep path's output starts at
    # zero and grows only where it lowers the loss; after a solved one, which fits the training
    # rows almost exactly, only where that holds against a penalty (DEEP_PENALTY)
    deep_start = "glorot_uniform" if wide is None else "zeros"
    penalty = None if solved is None else keras.regularizers.L2(DEEP_PENALTY)
    if spec.task == "classification":
        if wide is None:
            out = layers.Dense(spec.num_classes, activation="softmax", name="classes")(x)
        else:
            deep = layers.Dense(spec.num_classes, kernel_initializer=deep_start,
                                kernel_regularizer=penalty, name="deep_logits")(x)
            out = layers.Activation("softmax", name="classes")(
                _wide_and_deep(deep, wide, spec.num_classes, solved))
    else:
        mean, std = scale
        x = layers.Dense(1, kernel_initializer=deep_start, kernel_regularizer=penalty,
                         name="target")(x)
        out = layers.Rescaling(std, offset=mean, name="target_units")(
            x if wide is None else _wide_and_deep(x, wide, 1, solved))
        if level is not None:
            out = layers.Add(name="forecast")([out, level])
    return _model(inputs, out, name=f"candidate_{spec.candidate_id}")


def _model(inputs: Any, outputs: Any, **kwargs: Any) -> keras.Model:
    with warnings.catch_warnings():
        # a table's inputs are keyed by column name; their layers are named c<i>_<name> so
        # that no column ("classes", "n1_dense") can clash with another layer's name
        warnings.filterwarnings("ignore", "When providing `inputs` as a dict")
        return keras.Model(inputs, outputs, **kwargs)


def _wide_and_deep(deep: Any, wide: Any, units: int, solved: list[np.ndarray] | None) -> Any:
    """The deep path's output plus a linear map of the wide path's features: trained, or
    ``solved`` (its kernel and bias) and frozen."""
    linear = layers.Dense(units, trainable=solved is None, name="wide_linear")
    out = layers.Add(name="wide_and_deep")([deep, linear(wide)])
    if solved is not None:
        linear.set_weights(solved)
    return out


def _solved(spec: CandidateSpec, train: Any, rows: np.ndarray,
            scale: tuple[float, float] | None, relative: bool) -> list[np.ndarray]:
    """The wide path's linear map as a ridge regression of the training targets on ``rows``
    (:mod:`.ridge`): of the output layer's normalised target for a regression (``scale``, its
    mean and standard deviation); for a
    classification, of each class's ±1 indicator (a ridge classifier), its scores scaled into
    logits by the temperature its held-out scores call for."""
    labels = np.ravel(train.y)
    if spec.task == "classification":
        labels = labels.astype(int)
        fitted = ridge.fit(rows, np.where(np.eye(spec.num_classes)[labels] > 0, 1.0, -1.0))
        scale = ridge.temperature(fitted.held_out, labels)
        return [scale * fitted.kernel.astype("float32"), scale * fitted.bias.astype("float32")]
    mean, std = scale
    fitted = ridge.fit(rows, (labels - (train.x[:, -1] if relative else 0) - mean) / std)
    return [fitted.kernel.astype("float32"), fitted.bias.astype("float32")]


class Encoded(NamedTuple):
    """What an encoder gives the builder: the model's inputs, node 0, the family's node
    operation, the wide path's features (None without one), a level a regression's output
    is relative to (None: absolute), and the wide features of every training row where its
    linear map is to be solved rather than trained (None: trained)."""

    inputs: Any
    x: Any
    apply: Callable[..., Any]
    wide: Any = None
    level: Any = None
    wide_rows: np.ndarray | None = None


def _image(spec: CandidateSpec, train: Any) -> Encoded:
    inputs = keras.Input(shape=spec.input_shape, name="image")
    return Encoded(inputs, layers.Rescaling(spec.input_scale, name="rescale")(inputs),
                   images.apply_node)


def _table(spec: CandidateSpec, train: Any) -> Encoded:
    inputs, x, linear = tables.encode(spec.table,
                                      tables.Statistics.of(spec.table, train.columns))
    wide = None if spec.head.wide == "none" else linear
    return Encoded(inputs, x, tables.apply_node, wide,
                   wide_rows=_fixed_rows(inputs, wide, train))


def _text(spec: CandidateSpec, train: Any) -> Encoded:
    ((column, _),) = spec.table.columns
    inputs, x = sequences.encode_text(spec.table, train.columns[column])
    wide = None if spec.head.wide == "none" else sequences.bag_of_ngrams(
        spec.table, next(iter(inputs.values())), train.columns[column])
    return Encoded(inputs, x, sequences.apply_node, wide,
                   wide_rows=_fixed_rows(inputs, wide, train))


def _series(spec: CandidateSpec, train: Any) -> Encoded:
    inputs, x, level = sequences.encode_series(spec.series, train.x)
    if spec.head.wide == "kernels":
        wide = sequences.kernel_features(inputs, x, spec.series, train.x)
    else:
        wide = None if spec.head.wide == "none" else sequences.window_features(
            x, spec.series, decomposed=spec.head.wide == "decomposed")
    return Encoded(inputs, x, sequences.apply_node, wide, level,
                   _fixed_rows(inputs, wide, train))


def _fixed_rows(inputs: Any, wide: Any, train: Any) -> np.ndarray | None:
    """The wide features of every ``train`` example (in order) where the linear map after them
    is solved: features no weight of the model moves (a series' window, trend or kernels, a
    text's TF-IDF, a table's numbers and one-hot categories; not embeddings) and few enough for
    :func:`.ridge.solvable`. None: the map is trained with the network."""
    if wide is None or not ridge.solvable(train.count, wide.shape[-1]):
        return None
    features = _model(inputs, wide)
    if features.trainable_weights:
        return None
    return features.predict(train.batches(256), verbose=0)


# Each family's inputs, first layers, node operations and wide features (trial_image.families).
ENCODERS = {"image": _image, "table": _table, "text": _text, "series": _series}


def target_scale(train: Any, relative: bool = False) -> tuple[float, float]:
    """Mean and standard deviation of the training split's targets (``relative``: of their
    change from each window's last value)."""
    y = np.concatenate([np.ravel(labels) - (x[:, -1] if relative else 0)
                        for x, labels in train.arrays()]).astype("float64")
    return float(y.mean()), float(y.std()) or 1.0


def multiply_adds(model: keras.Model) -> int:
    """Multiply-adds of one forward pass of one example (MnasNet's FLOPS proxy): convolutions
    and dense layers, counted from their weight shapes and output sizes (a table's per-token
    projections once per token); pooling, normalisation, additions and the attention scores
    are not counted; an ensemble's are its members'. Deterministic, unlike a latency
    measurement."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # an ensemble's member
            total += multiply_adds(layer)
        elif isinstance(layer, layers.MultiHeadAttention):
            tokens = layer.get_build_config()["shapes_dict"]["query_shape"][1]
            total += tokens * sum(sub.kernel.shape.num_elements()
                                  for sub in layer._flatten_layers(include_self=False)
                                  if isinstance(sub, layers.EinsumDense))
        elif isinstance(layer, layers.Dense):
            repeats = int(np.prod(layer.output.shape[1:-1])) if len(layer.output.shape) > 2 \
                else 1
            total += repeats * layer.kernel.shape[0] * layer.kernel.shape[1]
        elif isinstance(layer, layers.EinsumDense):
            total += layer.kernel.shape.num_elements()
        elif isinstance(layer, layers.Conv1D):
            total += layer.output.shape[1] * layer.kernel.shape.num_elements()
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D)):
            height, width = layer.output.shape[1:3]
            if isinstance(layer, layers.SeparableConv2D):
                # the depthwise kernel runs at the output's stride, then a 1x1 mixes channels
                per_pixel = layer.depthwise_kernel.shape.num_elements() + \
                    layer.pointwise_kernel.shape.num_elements()
            else:  # a Conv2D's or DepthwiseConv2D's kernel: every weight once per output pixel
                per_pixel = layer.kernel.shape.num_elements()
            total += height * width * per_pixel
    return int(total)

