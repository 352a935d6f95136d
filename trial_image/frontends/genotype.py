"""A DARTS genotype string → :class:`CandidateSpec` (the discrete network DARTS derives).

Accepts Katib's printed form ``Genotype(normal=[[('op', i), ('op', j)], ...], normal_concat=
range(2, N), reduce=..., reduce_concat=...)`` (spaces optional, as Katib strips them) and the
original DARTS form with a flat list of pairs. Primitive names are Katib's
(``separable_convolution_3x3``) or DARTS' (``sep_conv_3x3``).

Network (DARTS' evaluation network): a 3×3 stem of ``stem_multiplier × init_channels``, then
``num_layers`` cells; cells at ``num_layers//3`` and ``2*num_layers//3`` (except cell 0) are
reduction cells that halve the map and double the channels.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from trial_image.errors import InputError
from trial_image.frontends.wire import literal_tree, strip_outer_quotes
from trial_image.spec import CandidateSpec, Frame, Node

_ALIASES = {
    "sep_conv_3x3": "separable_convolution_3x3",
    "sep_conv_5x5": "separable_convolution_5x5",
    "dil_conv_3x3": "dilated_convolution_3x3",
    "dil_conv_5x5": "dilated_convolution_5x5",
    "avg_pool_3x3": "avg_pooling_3x3",
    "max_pool_3x3": "max_pooling_3x3",
    "skip_connect": "skip_connection",
}
PRIMITIVES = (
    "separable_convolution_3x3",
    "separable_convolution_5x5",
    "dilated_convolution_3x3",
    "dilated_convolution_5x5",
    "avg_pooling_3x3",
    "max_pooling_3x3",
    "skip_connection",
)
_FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")
Cell = list[list[tuple[str, int]]]


def parse_genotype(value: str) -> dict[str, Any]:
    """Parse the genotype string into its four fields, without ``eval``."""
    text = strip_outer_quotes(value)
    text = re.sub(r"range\(\s*([0-9]{1,3})\s*,\s*([0-9]{1,3})\s*\)",
                  lambda m: repr(list(range(int(m[1]), int(m[2])))), text)
    try:
        call = literal_tree(text, "--genotype").body
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", None) == "Genotype"):
            raise ValueError("not a Genotype(...) call")
        fields = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    except (SyntaxError, ValueError) as exc:
        raise InputError(f"--genotype: cannot parse ({exc}): {text[:60]}") from None
    missing = [f for f in _FIELDS if f not in fields]
    if missing:
        raise InputError(f"--genotype: missing field(s) {', '.join(missing)}")
    genotype = {f: fields[f] for f in _FIELDS}
    for kind in ("normal", "reduce"):
        genotype[kind] = _cell(genotype[kind], kind)
        concat = list(genotype[f"{kind}_concat"])
        states = len(genotype[kind]) + 2
        if not concat or any(not isinstance(i, int) or not 0 <= i < states for i in concat):
            raise InputError(f"--genotype: {kind}_concat {concat} must index the cell's states")
        genotype[f"{kind}_concat"] = concat
    return genotype


def _cell(edges: Any, kind: str) -> Cell:
    if isinstance(edges, list | tuple) and edges and all(isinstance(e, tuple) for e in edges):
        edges = [list(edges[i:i + 2]) for i in range(0, len(edges), 2)]  # DARTS' flat form
    if not isinstance(edges, list | tuple) or not edges:
        raise InputError(f"--genotype: {kind} must be a non-empty list of nodes")
    cell: Cell = []
    for node_index, node in enumerate(edges):
        pairs = []
        for edge in node:
            if not (isinstance(edge, tuple | list) and len(edge) == 2):
                raise InputError(f"--genotype: {kind} node {node_index}: bad edge {edge!r}")
            op, source = _ALIASES.get(edge[0], edge[0]), edge[1]
            if op == "none":
                raise InputError(f"--genotype: {kind} node {node_index}: 'none' cannot be an edge "
                                 "of a derived genotype")
            if op not in PRIMITIVES:
                raise InputError(f"--genotype: unknown primitive {edge[0]!r}; known: "
                                 f"{', '.join(PRIMITIVES)}")
            if not isinstance(source, int) or not 0 <= source < node_index + 2:
                raise InputError(f"--genotype: {kind} node {node_index}: input {source!r} must "
                                 f"be a previous state (0..{node_index + 1})")
            pairs.append((op, source))
        cell.append(pairs)
    return cell


def reduction_cells(num_layers: int) -> set[int]:
    return {num_layers // 3, 2 * num_layers // 3} - {0}


class _Graph:
    """Appends nodes and hands back their indices (0 is the network input)."""

    def __init__(self) -> None:
        self.nodes: list[Node] = []

    def add(self, op: str, inputs: tuple[int, ...], merge: str = "concat", **params: Any) -> int:
        self.nodes.append(Node(op, inputs, params, merge))
        return len(self.nodes)


def primitive(graph: Any, name: str, source: Any, channels: int, stride: int) -> Any:
    """One DARTS primitive on ``source`` through ``graph.add`` (a spec graph here; the DARTS
    super-net applies the same nodes to tensors), so both networks use the same operations."""
    if name == "skip_connection":
        return source if stride == 1 else graph.add("factorized_reduce", (source,),
                                                    filters=channels)
    size = int(name[-1])
    if name.startswith("separable_convolution"):
        first = graph.add("sep_conv", (source,), filters=channels, kernel=size, stride=stride)
        return graph.add("sep_conv", (first,), filters=channels, kernel=size)
    if name.startswith("dilated_convolution"):
        return graph.add("sep_conv", (source,), filters=channels, kernel=size, stride=stride,
                         dilation=2)
    pool_type = "max" if name.startswith("max") else "avg"
    return graph.add("pool", (source,), pool_type=pool_type, size=size, stride=stride)


def preprocess(graph: Any, s0: Any, s1: Any, channels: int, reduction_prev: bool
               ) -> list[Any]:
    """A cell's two input states: the previous two cell outputs brought to ``channels``."""
    return [graph.add("factorized_reduce", (s0,), filters=channels) if reduction_prev
            else graph.add("conv", (s0,), filters=channels, kernel=1),
            graph.add("conv", (s1,), filters=channels, kernel=1)]


def format_genotype(genotype: dict[str, Any]) -> str:
    """Katib's printed form, no spaces: what its collector filter ``([\\w-]+)=(Genotype.*)``
    reads and :func:`parse_genotype` reads back."""
    parts = []
    for kind in ("normal", "reduce"):
        nodes = ",".join("[" + ",".join(f"('{op}',{src})" for op, src in node) + "]"
                         for node in genotype[kind])
        concat = list(genotype[f"{kind}_concat"])
        parts.append(f"{kind}=[{nodes}],{kind}_concat=range({concat[0]},{concat[-1] + 1})")
    return f"Genotype({','.join(parts)})"


def to_spec(
    genotype: str,
    *,
    num_layers: int,
    init_channels: int,
    stem_multiplier: int,
    frame: Frame,
) -> CandidateSpec:
    parsed = parse_genotype(genotype)
    if num_layers < 1 or init_channels < 1 or stem_multiplier < 1:
        raise InputError("--num-layers, --init-channels and --stem-multiplier must be >= 1")
    graph = _Graph()
    channels = init_channels
    stem = graph.add("conv", (0,), filters=stem_multiplier * channels, kernel=3)
    s0 = s1 = stem
    reductions = reduction_cells(num_layers)
    reduction_prev = False
    for layer in range(num_layers):
        reduction = layer in reductions
        if reduction:
            channels *= 2
        kind = "reduce" if reduction else "normal"
        states = preprocess(graph, s0, s1, channels, reduction_prev)
        for pairs in parsed[kind]:
            edges = tuple(
                primitive(graph, op, states[src], channels, 2 if reduction and src < 2 else 1)
                for op, src in pairs
            )
            states.append(graph.add("identity", edges, merge="add"))
        out = graph.add("identity", tuple(states[i] for i in parsed[f"{kind}_concat"]))
        s0, s1, reduction_prev = s1, out, reduction
    return frame.candidate("genotype", tuple(graph.nodes))
