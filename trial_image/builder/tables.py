"""Table inputs and operations, on ``(batch, features)``.

The inputs are the raw columns, one ``(batch, 1)`` tensor each: float32 numbers (NaN when
missing) and strings (``""`` when missing). Each number is normalised with the training split's
mean and variance, then imputed: NaN becomes 0 (the mean) and a second feature says it was
missing. With the ``piecewise`` numeric encoding, each number is also encoded piecewise-linearly
in up to :data:`BINS` quantile bins of its training values (a bin's feature is 0 below it, 1
above it, and rises linearly across it; a missing value is the mean's). Each string is looked up
in the training split's vocabulary (one more index for values never seen) and embedded. The
encoded columns are concatenated: node 0 of the candidate.

The operations are those of the tabular deep-learning literature: a dense layer, a residual
MLP block, a gated linear unit, and a transformer block over feature tokens (FT-Transformer:
each feature gets its own linear token, then self-attention across the features).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from trial_image.builder.images import batch_norm
from trial_image.builder.sequences import transformer_block
from trial_image.errors import InputError
from trial_image.spec import Node, Table, with_defaults

MAX_VOCABULARY = 10_000  # the most frequent values of a categorical column; the rest are unseen
BINS = 16  # a numeric column's quantile bins in the piecewise encoding (fewer where values repeat)


@keras.saving.register_keras_serializable("nasflow")
class Impute(layers.Layer):
    """``(batch, n)`` with NaN → ``(batch, 2n)``: the values with NaN replaced by 0, then 1
    where a value was missing. A named layer, not a ``Lambda``, so a saved model loads without
    running pickled code."""

    def call(self, x: Any) -> Any:
        missing = ops.isnan(x)
        return ops.concatenate([ops.where(missing, ops.zeros_like(x), x),
                                ops.cast(missing, x.dtype)], axis=-1)

    def compute_output_shape(self, shape: tuple) -> tuple:
        return (*shape[:-1], 2 * shape[-1])


@dataclass(frozen=True)
class Statistics:
    """What the first layers learn from the training split, never from the others."""

    numeric: dict[str, tuple[float, float]]  # column -> (mean, variance)
    vocabularies: dict[str, list[str]]
    edges: dict[str, np.ndarray]  # column -> its distinct training quantiles (piecewise only)

    @classmethod
    def of(cls, table: Table, columns: dict[str, np.ndarray]) -> Statistics:
        numeric, vocabularies, edges = {}, {}, {}
        for name, kind in table.columns:
            if name not in columns:
                raise InputError(f"the data has no column {name!r} that the candidate reads")
            values = columns[name]
            if kind == "numeric":
                seen = values[~np.isnan(values)].astype("float64")
                numeric[name] = (float(seen.mean()), float(seen.var()) or 1.0) if len(seen) \
                    else (0.0, 1.0)
                if table.numeric_encoding == "piecewise" and len(seen):
                    edges[name] = np.unique(np.quantile(seen, np.linspace(0, 1, BINS + 1)))
            else:
                counts = Counter(values.tolist())
                vocabularies[name] = sorted(counts, key=lambda v: (-counts[v], v)
                                            )[:MAX_VOCABULARY]
        return cls(numeric, vocabularies, edges)


def layer_name(column: str) -> str:
    """A Keras-safe name for a column's layers (the model's inputs keep the column names)."""
    safe = "".join(c if c.isalnum() or c in "_-." else "_" for c in column)
    return safe[:60] or "column"


def encode(table: Table, statistics: Statistics) -> tuple[dict[str, Any], Any, Any]:
    """The model's inputs (one per column, by name), node 0 (the encoded row) and the row a
    linear model reads (a wide path's features): the same numbers, each category one-hot, as
    wide & deep's wide part reads them (Cheng et al. 2016), a fixed function of the inputs
    whose linear map the builder can solve; the embeddings are the deep path's."""
    inputs: dict[str, Any] = {}
    encoded, linear = [], []
    for index, (name, kind) in enumerate(table.columns):
        tag = f"c{index}_{layer_name(name)}"
        if kind == "numeric":
            inputs[name] = keras.Input((1,), name=tag, dtype="float32")
            mean, variance = statistics.numeric[name]
            x = layers.Normalization(mean=mean, variance=variance, name=f"{tag}_norm")(
                inputs[name])
            parts = [Impute(name=f"{tag}_impute")(x)]
            if len(statistics.edges.get(name, ())) > 2:  # two bins or more
                parts.append(_piecewise(parts[0], statistics.edges[name], mean, variance, tag))
            encoded.extend(parts)
            linear.extend(parts)
        else:
            inputs[name] = keras.Input((1,), name=tag, dtype="string")
            vocabulary = statistics.vocabularies[name]
            ids = layers.StringLookup(vocabulary=vocabulary, num_oov_indices=1,
                                      name=f"{tag}_lookup")(inputs[name])
            vectors = layers.Embedding(len(vocabulary) + 1, table.embedding_size,
                                       name=f"{tag}_embed")(ids)
            encoded.append(layers.Flatten(name=f"{tag}_flat")(vectors))
            linear.append(layers.CategoryEncoding(len(vocabulary) + 1, output_mode="one_hot",
                                                  name=f"{tag}_onehot")(ids))
    row = _joined(encoded, "columns")
    categorical = any(kind != "numeric" for _, kind in table.columns)
    return inputs, row, _joined(linear, "wide_columns") if categorical else row


def _joined(parts: list[Any], name: str) -> Any:
    return parts[0] if len(parts) == 1 else layers.Concatenate(name=name)(parts)


def _piecewise(imputed: Any, edges: np.ndarray, mean: float, variance: float, tag: str) -> Any:
    """A number's piecewise-linear encoding from its imputed ``(value, missing)`` pair: a frozen
    dense layer maps the normalised value to its position in each bin, a ReLU clipped at 1 keeps
    it in [0, 1] (standard layers: the model saves and converts as any)."""
    edges = (edges - mean) / np.sqrt(variance)
    low, width = edges[:-1], np.diff(edges)
    bins = layers.Dense(len(low), trainable=False, name=f"{tag}_bins")
    position = bins(imputed)
    bins.set_weights([np.stack([1 / width, np.zeros_like(width)]).astype("float32"),
                      (-low / width).astype("float32")])
    return layers.ReLU(max_value=1.0, name=f"{tag}_piecewise")(position)


def apply_node(node: Node, x: Any, name: str) -> Any:
    p = with_defaults(node.op, node.params)
    if node.op == "identity":
        return x
    if node.op == "dense":
        x = layers.Dense(p["units"], use_bias=not p["batch_norm"], name=f"{name}_dense")(x)
        if p["batch_norm"]:
            x = batch_norm(x, name)
        x = layers.ReLU(name=f"{name}_relu")(x)
    elif node.op == "residual":
        width = x.shape[-1]
        h = layers.BatchNormalization(name=f"{name}_bn")(x)
        h = layers.Dense(p["units"], activation="relu", name=f"{name}_up")(h)
        if p["dropout"]:
            h = layers.Dropout(p["dropout"], name=f"{name}_inner_dropout")(h)
        h = layers.Dense(width, name=f"{name}_down")(h)
        return layers.Add(name=f"{name}_add")([x, h])
    elif node.op == "glu":
        value = layers.Dense(p["units"], name=f"{name}_value")(x)
        gate = layers.Dense(p["units"], activation="sigmoid", name=f"{name}_gate")(x)
        x = layers.Multiply(name=f"{name}_glu")([value, gate])
    else:  # attention
        return _attention(x, p["heads"], p["key_dim"], p["dropout"], name)
    if p["dropout"]:
        x = layers.Dropout(p["dropout"], name=f"{name}_dropout")(x)
    return x


def _attention(x: Any, heads: int, key_dim: int, dropout: float, name: str) -> Any:
    """One transformer block over feature tokens, mean-pooled back to a row."""
    features, width = x.shape[-1], heads * key_dim
    tokens = layers.EinsumDense("bf,fd->bfd", output_shape=(features, width), bias_axes="fd",
                                name=f"{name}_tokens")(x)
    tokens = transformer_block(tokens, heads, key_dim, dropout, name)
    return layers.GlobalAveragePooling1D(name=f"{name}_pool")(tokens)
