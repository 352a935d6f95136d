"""Katib's ENAS wire format (``architecture`` + ``nn_config``) → :class:`CandidateSpec`.

Row ``r`` of ``architecture`` describes layer ``r+1``: its operation id, then ``r`` skip bits;
bit ``k`` = 1 also feeds layer ``k`` (layer 0 = the network input). The previous layer is always
an input. Unlike Katib's example trial, every ``opt_params`` entry is honoured.

Besides Katib's image operations, a table's search space (``graphConfig.inputSizes: [columns]``)
may use ``dense``, ``residual``, ``glu`` (``num_units``) and ``attention`` (``num_heads``,
``key_dim``) operations, a text's or a series' (``inputSizes: [1]`` or ``[lookback]``)
``conv1d`` (``num_filter``, ``filter_size``, ``dilation``), ``rnn`` (``num_units``, a GRU) and
``attention``: Katib's ENAS service passes any ``operationType`` through, so the same space runs
on Katib, on ``nasflow run``, and under evolution and pareto-evolution.
"""

from __future__ import annotations

from typing import Any

from trial_image.errors import InputError
from trial_image.frontends.wire import parse_literal, to_int
from trial_image.spec import CandidateSpec, Frame, Node

# Katib op type -> (our op, {katib param: our param}, Katib's default for each param).
_OP_TYPES: dict[str, tuple[str, dict[str, str], dict[str, Any]]] = {
    "convolution": (
        "conv",
        {"num_filter": "filters", "filter_size": "kernel", "stride": "stride"},
        {"num_filter": 64, "filter_size": 3, "stride": 1},
    ),
    "separable_convolution": (
        "sep_conv",
        {"num_filter": "filters", "filter_size": "kernel", "stride": "stride",
         "depth_multiplier": "depth_multiplier"},
        {"num_filter": 64, "filter_size": 3, "stride": 1, "depth_multiplier": 1},
    ),
    "depthwise_convolution": (
        "depthwise_conv",
        {"filter_size": "kernel", "stride": "stride", "depth_multiplier": "depth_multiplier"},
        {"filter_size": 3, "stride": 1, "depth_multiplier": 1},
    ),
    "reduction": (
        "pool",
        {"reduction_type": "pool_type", "pool_size": "size", "stride": "stride"},
        {"reduction_type": "max_pooling", "pool_size": 2},
    ),
    "dense": ("dense", {"num_units": "units"}, {"num_units": 64}),
    "residual": ("residual", {"num_units": "units"}, {"num_units": 64}),
    "glu": ("glu", {"num_units": "units"}, {"num_units": 64}),
    "attention": ("attention", {"num_heads": "heads", "key_dim": "key_dim"},
                  {"num_heads": 2, "key_dim": 8}),
    "conv1d": ("conv1d", {"num_filter": "filters", "filter_size": "kernel",
                          "dilation": "dilation"}, {"num_filter": 64, "filter_size": 3}),
    "rnn": ("rnn", {"num_units": "units"}, {"num_units": 64}),
}
_REDUCTIONS = {"max_pooling": "max", "avg_pooling": "avg"}


def parse_architecture(value: str) -> list[list[int]]:
    arch = parse_literal(value, "--architecture")
    if not isinstance(arch, list) or not all(isinstance(row, list) and row for row in arch):
        raise InputError("--architecture: expected a list of layers like [[27], [29, 0], ...]")
    for r, row in enumerate(arch):
        if len(row) != r + 1:
            raise InputError(
                f"--architecture: layer {r + 1} needs 1 operation id and {r} skip bits, "
                f"got {row}"
            )
        if any(bit not in (0, 1) for bit in row[1:]):
            raise InputError(f"--architecture: skip bits of layer {r + 1} must be 0 or 1: {row}")
    return arch


def parse_nn_config(value: str) -> dict[str, Any]:
    config = parse_literal(value, "--nn_config")
    if not isinstance(config, dict):
        raise InputError("--nn_config: expected a dict like {'num_layers': ..., 'embedding': ...}")
    missing = [k for k in ("num_layers", "input_sizes", "output_sizes", "embedding")
               if k not in config]
    if missing:
        raise InputError(f"--nn_config: missing key(s) {', '.join(missing)}")
    return config


def _operation(embedding: dict[str, Any], op_id: Any, layer: int) -> Node:
    entry = embedding.get(str(op_id))
    if not isinstance(entry, dict):
        raise InputError(
            f"--nn_config: layer {layer} uses operation {op_id}, absent from embedding")
    op_type = entry.get("opt_type")
    if op_type not in _OP_TYPES:
        raise InputError(
            f"--nn_config: operation {op_id} has unknown opt_type {op_type!r}; "
            f"supported: {', '.join(_OP_TYPES)}"
        )
    op, names, defaults = _OP_TYPES[op_type]
    raw = {**defaults, **(entry.get("opt_params") or {})}
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise InputError(
            f"--nn_config: operation {op_id} ({op_type}) has unsupported opt_params "
            f"{', '.join(unknown)}; supported: {', '.join(names)}"
        )
    params: dict[str, Any] = {}
    for key, ours in names.items():
        if key not in raw or raw[key] in (None, "None"):
            continue
        if key == "reduction_type":
            if raw[key] not in _REDUCTIONS:
                raise InputError(
                    f"--nn_config: operation {op_id}: reduction_type must be max_pooling or "
                    f"avg_pooling, got {raw[key]!r}"
                )
            params[ours] = _REDUCTIONS[raw[key]]
        else:
            params[ours] = to_int(raw[key], f"--nn_config: operation {op_id} {key}")
    return Node(op, (layer - 1,), params)


def to_spec(
    architecture: str,
    nn_config: str,
    *,
    frame: Frame,
) -> CandidateSpec:
    arch = parse_architecture(architecture)
    config = parse_nn_config(nn_config)
    if to_int(config["num_layers"], "--nn_config num_layers") != len(arch):
        raise InputError(
            f"--nn_config: num_layers is {config['num_layers']} but --architecture has "
            f"{len(arch)} layers"
        )
    declared_input = [to_int(v, "--nn_config input_sizes") for v in config["input_sizes"]]
    what = "columns" if frame.table is not None else "images"
    if tuple(declared_input) != tuple(frame.input_shape):
        raise InputError(
            f"--nn_config: input_sizes {declared_input} do not match the dataset's {what} "
            f"{list(frame.input_shape)}; set graphConfig.inputSizes to the dataset's shape"
        )
    declared_output = [to_int(v, "--nn_config output_sizes") for v in config["output_sizes"]]
    outputs = frame.num_classes if frame.task == "classification" else 1
    if declared_output[-1:] != [outputs]:
        raise InputError(
            f"--nn_config: output_sizes {declared_output} do not match the dataset's "
            + (f"{outputs} classes" if frame.task == "classification" else
               "one regression output ([1])")
        )
    nodes = []
    for layer, row in enumerate(arch, start=1):
        node = _operation(config["embedding"], row[0], layer)
        skips = tuple(k for k, bit in enumerate(row[1:]) if bit == 1)
        nodes.append(Node(node.op, (*skips, layer - 1), node.params))
    return frame.candidate("enas", tuple(nodes))
