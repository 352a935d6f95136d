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
the remainder (DLinear, Zeng et al. 2023).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers

from trial_image.spec import Node, Series, Table, with_defaults

TREND_STEPS = 25  # DLinear's moving average


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
