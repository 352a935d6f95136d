"""Sequence inputs and operations, on ``(batch, steps, channels)``: a text's tokens or a
series' window.

A text arrives raw (one string a row): a ``TextVectorization`` layer adapted on the training
texts (lower case, punctuation stripped, the ``vocabulary_size`` most frequent words, the first
``sequence_length`` tokens, padded) and an embedding make its steps. A series' window arrives
raw (its last ``lookback`` values): normalised with the training windows' mean and variance, one
channel a step, or first made relative to its last value (a forecast is then the change from
it). Operations keep the number of steps, so any of them may follow any other and skip
connections concatenate: a dilated 1-D convolution, a GRU or LSTM layer (optionally
bidirectional), a transformer block over the steps. The head averages over the steps.

Their wide paths: a text's TF-IDF of words and word pairs (the classical baseline's features,
adapted on the training texts); a series' normalised window, or its moving-average trend and
the remainder (DLinear, Zeng et al. 2023), or the responses of MiniRocket's fixed kernels (the
series classifier's classical baseline, Dempster et al. 2021).
"""

from __future__ import annotations

import itertools
from typing import Any

import keras
import numpy as np
from keras import layers

from trial_image.spec import Node, Series, Table, with_defaults

TREND_STEPS = 25  # DLinear's moving average
# MiniRocket's: 84 kernels of 9 weights, three of them 2 and six -1 (every choice of the three),
# at up to 32 dilations, about 10,000 features in all
KERNELS = np.array([[2.0 if i in chosen else -1.0 for i in range(9)]
                    for chosen in itertools.combinations(range(9), 3)], dtype="float32")
KERNEL_DILATIONS = 32
KERNEL_FEATURES = 10_000
KERNEL_SAMPLE = 10_000  # training windows at most that standardise the features


def encode_text(table: Table, texts: np.ndarray) -> tuple[dict[str, Any], Any]:
    """The model's one input (the text column, by name) and node 0: the embedded tokens."""
    ((name, _),) = table.columns
    text = keras.Input((1,), name="c0_text", dtype="string")
    vectorize = layers.TextVectorization(max_tokens=table.vocabulary_size,
                                         output_sequence_length=table.sequence_length,
                                         name="tokens")
    vectorize.adapt(np.asarray(texts, dtype=object).astype(str))
    steps = layers.Embedding(vectorize.vocabulary_size(), table.embedding_size,
                             name="token_embedding")(vectorize(text))
    return {name: text}, steps


def bag_of_ngrams(table: Table, text: Any, texts: np.ndarray) -> Any:
    """A text's wide features: TF-IDF of its words and word pairs (``vocabulary_size`` of them,
    the most frequent in training)."""
    vectorize = layers.TextVectorization(max_tokens=table.vocabulary_size, ngrams=2,
                                         output_mode="tf_idf", name="ngrams")
    vectorize.adapt(np.asarray(texts, dtype=object).astype(str))
    return vectorize(text)


def window_features(steps: Any, series: Series, decomposed: bool) -> Any:
    """A series' wide features from its normalised steps: the window itself, or (decomposed)
    its trend, a centred moving average of up to :data:`TREND_STEPS` values, and the
    remainder."""
    window = layers.Flatten(name="wide_window")(steps)
    if not decomposed:
        return window
    size = min(TREND_STEPS, series.lookback)
    trend = layers.Flatten(name="wide_trend")(layers.AveragePooling1D(
        size, strides=1, padding="same", name="trend_average")(steps))
    remainder = layers.Subtract(name="wide_remainder")([window, trend])
    return layers.Concatenate(name="wide_decomposed")([trend, remainder])


def kernel_features(window: Any, steps: Any, series: Series, windows: np.ndarray) -> Any:
    """A series' wide features as MiniRocket computes them: each of :data:`KERNELS` at each
    dilation (exponentially spaced up to a receptive field of the whole window) convolves the
    normalised steps, and for each of a few biases, quantiles of its response on training
    windows at low-discrepancy fractions, the proportion of steps where the response exceeds the
    bias is one feature; features are standardised on the training windows (a sample of
    :data:`KERNEL_SAMPLE` at most). All frozen, as the linear map after them is where the
    builder solves it (the baseline's ridge classifier, :mod:`.ridge`). Standard Keras layers
    (a convolution, a depthwise 1×1 convolution that subtracts the biases and scales the result
    so that a clipped ReLU is a step, a pooling): the model saves, serves and converts as
    any."""
    length = series.lookback
    dilations = np.unique(np.floor(2 ** np.linspace(
        0, max(np.log2((length - 1) / 8), 0), KERNEL_DILATIONS)).astype(int))
    per = max(1, KERNEL_FEATURES // (len(KERNELS) * len(dilations)))
    fractions = (np.arange(1, per + 1) * (np.sqrt(5) + 1) / 2) % 1
    rng = np.random.default_rng(0)  # the same biases whenever the model is rebuilt
    examples = keras.Model(window, steps)(windows[rng.integers(len(windows), size=len(KERNELS))])
    features = []
    for dilation in map(int, dilations):
        name = f"kernels_d{dilation}"
        convolve = layers.Conv1D(len(KERNELS), 9, padding="same", dilation_rate=dilation,
                                 use_bias=False, trainable=False, name=name)
        responses = convolve(steps)
        convolve.set_weights([KERNELS.T[:, None, :]])
        answers = keras.ops.convert_to_numpy(convolve(examples))  # (example, step, kernel)
        # kernel k's biases from example k's responses, as MiniRocket draws one per kernel
        biases = np.stack([np.quantile(answers[k, :, k], fractions) for k in range(len(KERNELS))])
        sharp = 1e3 / (float(np.abs(answers).mean()) or 1.0)  # a step 1/1000 of a response wide
        shift = layers.DepthwiseConv1D(1, depth_multiplier=per, trainable=False,
                                       name=f"{name}_biases")
        above = shift(responses)
        shift.set_weights([np.full((1, len(KERNELS), per), sharp, "float32"),
                           (-sharp * biases).reshape(-1).astype("float32")])
        features.append(layers.GlobalAveragePooling1D(name=f"{name}_ppv")(
            layers.ReLU(max_value=1.0, name=f"{name}_step")(above)))
    features = layers.Concatenate(name="kernel_features")(features)
    if len(windows) > KERNEL_SAMPLE:  # the statistics of a sample: build time stays bounded
        windows = windows[np.sort(rng.choice(len(windows), KERNEL_SAMPLE, replace=False))]
    seen = keras.Model(window, features).predict(windows, batch_size=64, verbose=0)
    return layers.Normalization(mean=seen.mean(axis=0), variance=np.maximum(seen.var(axis=0), 1e-4),
                                name="kernel_standardise")(features)


def encode_series(series: Series, windows: np.ndarray) -> tuple[Any, Any, Any]:
    """The model's input (a window of raw values), node 0 (one normalised channel a step) and
    the window's level to add back to a forecast: None for a ``global`` level, the window's last
    value for ``last`` (its steps are then relative to it)."""
    window = x = keras.Input((series.lookback,), name="window", dtype="float32")
    values = windows.astype("float64")
    level = None
    if series.level == "last":
        values = values - values[:, -1:]
        level = layers.Flatten(name="level")(layers.Cropping1D(
            (series.lookback - 1, 0), name="last_value")(layers.Reshape(
                (series.lookback, 1), name="window_steps")(window)))
        x = layers.Subtract(name="relative")([window, level])
    x = layers.Normalization(mean=float(values.mean()), variance=float(values.var()) or 1.0,
                             axis=None, name="normalise")(x)
    return window, layers.Reshape((series.lookback, 1), name="steps")(x), level


def apply_node(node: Node, x: Any, name: str) -> Any:
    p = with_defaults(node.op, node.params)
    if node.op == "identity":
        return x
    if node.op == "conv1d":
        x = layers.Conv1D(p["filters"], p["kernel"], padding="same", dilation_rate=p["dilation"],
                          activation="relu", name=f"{name}_conv1d")(x)
    elif node.op == "rnn":
        cell = layers.GRU if p["cell"] == "gru" else layers.LSTM
        recurrent = cell(p["units"], return_sequences=True, name=f"{name}_{p['cell']}")
        x = (layers.Bidirectional(recurrent, name=f"{name}_bidirectional")
             if p["bidirectional"] else recurrent)(x)
    else:  # attention
        return _attention(x, p["heads"], p["key_dim"], p["dropout"], name)
    if p["dropout"]:
        x = layers.Dropout(p["dropout"], name=f"{name}_dropout")(x)
    return x


def _attention(x: Any, heads: int, key_dim: int, dropout: float, name: str) -> Any:
    """A transformer block over the steps (projected to ``heads × key_dim`` first). Positions
    come from the operations before it (a convolution or a recurrent layer); on raw embeddings
    alone it sees a bag of tokens."""
    width = heads * key_dim
    if x.shape[-1] != width:
        x = layers.Dense(width, name=f"{name}_project")(x)
    return transformer_block(x, heads, key_dim, dropout, name)


def transformer_block(x: Any, heads: int, key_dim: int, dropout: float, name: str) -> Any:
    """One pre-norm transformer block over ``(batch, tokens, heads × key_dim)``: self-attention,
    then a two-layer feed-forward network, each around a residual connection."""
    width = heads * key_dim
    h = layers.LayerNormalization(name=f"{name}_ln1")(x)
    h = layers.MultiHeadAttention(heads, key_dim, dropout=dropout, name=f"{name}_mha")(h, h)
    x = layers.Add(name=f"{name}_add1")([x, h])
    h = layers.LayerNormalization(name=f"{name}_ln2")(x)
    h = layers.Dense(2 * width, activation="relu", name=f"{name}_ffn1")(h)
    h = layers.Dense(width, name=f"{name}_ffn2")(h)
    return layers.Add(name=f"{name}_add2")([x, h])
