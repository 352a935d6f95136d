"""The DARTS super-net in Keras: every edge of a cell is a mixed operation, the softmax(α)-weighted
sum of all primitives of the search space, with weights shared across the search.

The primitives are the same nodes the derived network is built from (the genotype front end's
``primitive``, applied by the one builder's ``apply_node``). α is not a weight of the model: the
model takes softmax(α) of normal and reduction cells as two extra inputs, so the optimiser of the
weights can never touch α and the one of α never the weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
from keras import layers

from trial_image.builder import apply_node, batch_norm, merge_inputs
from trial_image.darts.settings import NONE
from trial_image.frontends.genotype import preprocess, primitive, reduction_cells
from trial_image.spec import Node


@dataclass(frozen=True)
class SupernetShape:
    primitives: tuple[str, ...]  # the search space, "none" last
    num_nodes: int

    @property
    def edges(self) -> int:
        """Edges per cell: node i has i + 2 inputs."""
        return self.num_nodes * (self.num_nodes + 3) // 2

    def inputs_of(self, node: int) -> range:
        return range(node + 2)


class MixedEdge(layers.Layer):
    """Σ_k w[edge, k] · op_k(x) over the edge's non-``none`` primitives (``none`` adds zero)."""

    def __init__(self, edge: int, columns: list[int], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.edge = edge
        self.columns = columns

    def call(self, inputs: list) -> Any:
        weights, *outputs = inputs
        total = None
        for column, out in zip(self.columns, outputs, strict=True):
            term = weights[0, self.edge, column] * out
            total = term if total is None else total + term
        return total


class _Tensors:
    """``graph.add`` that applies a node to tensors at once (see genotype.primitive)."""

    def __init__(self) -> None:
        self.count = 0

    def add(self, op: str, inputs: tuple, merge: str = "concat", **params: Any) -> Any:
        self.count += 1
        name = f"s{self.count}"
        return apply_node(Node(op, (1,), params, merge),
                          merge_inputs(list(inputs), merge, name), name, affine=False)


def _normalised(x: Any, primitive_name: str, name: str) -> Any:
    """DARTS' MixedOp puts a non-affine batch norm after pooling, so a parameter-free pool
    competes with the (batch-normalised) convolutions on the same scale."""
    if "pooling" not in primitive_name:
        return x
    return batch_norm(x, name, affine=False)


def build_supernet(shape: SupernetShape, *, input_shape: tuple[int, int, int],
                   num_classes: int, input_scale: float, num_layers: int, init_channels: int,
                   stem_multiplier: int) -> keras.Model:
    """Inputs: image batch, softmax(α_normal)[None], softmax(α_reduce)[None]
    (each ``(1, edges, primitives)``); output: class probabilities."""
    image = keras.Input(shape=input_shape, name="image")
    mix = {kind: keras.Input(shape=(shape.edges, len(shape.primitives)), batch_size=1,
                             name=f"weights_{kind}") for kind in ("normal", "reduce")}
    graph = _Tensors()
    x = layers.Rescaling(input_scale, name="rescale")(image)
    stem = apply_node(Node("conv", (0,), {"filters": stem_multiplier * init_channels,
                                          "kernel": 3}), x, "stem")
    operations = [(i, p) for i, p in enumerate(shape.primitives) if p != NONE]
    channels, s0, s1, reduction_prev = init_channels, stem, stem, False
    reductions = reduction_cells(num_layers)
    for layer in range(num_layers):
        reduction = layer in reductions
        channels *= 2 if reduction else 1
        weights = mix["reduce" if reduction else "normal"]
        states = preprocess(graph, s0, s1, channels, reduction_prev)
        edge = 0
        for node in range(shape.num_nodes):
            terms = []
            for source in shape.inputs_of(node):
                stride = 2 if reduction and source < 2 else 1
                outputs = [_normalised(primitive(graph, name, states[source], channels,
                                                 stride), name, f"cell{layer}_e{edge}_{k}")
                           for k, (_, name) in enumerate(operations)]
                terms.append(MixedEdge(edge, [i for i, _ in operations],
                                       name=f"cell{layer}_edge{edge}")([weights, *outputs]))
                edge += 1
            states.append(terms[0] if len(terms) == 1 else
                          layers.Add(name=f"cell{layer}_node{node}")(terms))
        out = layers.Concatenate(name=f"cell{layer}_out")(states[2:]) if shape.num_nodes > 1 \
            else states[2]
        s0, s1, reduction_prev = s1, out, reduction
    pooled = layers.GlobalAveragePooling2D(name="head_pool")(s1)
    probabilities = layers.Dense(num_classes, activation="softmax", name="classes")(pooled)
    return keras.Model([image, mix["normal"], mix["reduce"]], probabilities, name="darts_supernet")
