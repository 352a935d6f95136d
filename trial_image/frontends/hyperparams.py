"""Plain hyperparameters (``--num-blocks=3 --kernel-size-2=5 ...``) → :class:`CandidateSpec`.

A block is a convolution (ReLU-Conv-BN, stride 1) optionally followed by a 2×2 pooling.
Per-block values (``--filters-2``, ``--kernel-size-2``, ``--pooling-2``, 1-based) override the
value for all blocks (``--filters``, ``--kernel-size``, ``--pooling``).
"""

from __future__ import annotations

from trial_image.errors import InputError
from trial_image.spec import CandidateSpec, Frame, Node

POOLINGS = ("max", "avg", "none")
KERNEL_SIZES = (3, 5, 7)


def to_spec(
    *,
    num_blocks: int,
    filters: list[int],
    kernel_sizes: list[int],
    poolings: list[str],
    batch_norm: bool,
    frame: Frame,
) -> CandidateSpec:
    if num_blocks < 1:
        raise InputError(f"--num-blocks must be at least 1, got {num_blocks}")
    nodes: list[Node] = []
    for block in range(num_blocks):
        if kernel_sizes[block] not in KERNEL_SIZES:
            raise InputError(f"block {block + 1}: kernel size must be one of {KERNEL_SIZES}, "
                             f"got {kernel_sizes[block]}")
        if poolings[block] not in POOLINGS:
            raise InputError(f"block {block + 1}: pooling must be one of {', '.join(POOLINGS)}, "
                             f"got {poolings[block]!r}")
        nodes.append(Node("conv", (len(nodes),), {"filters": filters[block],
                                                  "kernel": kernel_sizes[block],
                                                  "batch_norm": batch_norm}))
        if poolings[block] != "none":
            nodes.append(Node("pool", (len(nodes),), {"pool_type": poolings[block], "size": 2}))
    return frame.candidate("hyperparameters", tuple(nodes))


def to_block_spec(*, blocks: list[str], units: list[int], kernel_sizes: list[int],
                  dropout: float, batch_norm: bool, heads: int, key_dim: int, cell: str,
                  bidirectional: bool, frame: Frame) -> CandidateSpec:
    """A stack of blocks, one per entry of ``blocks``. Tables: ``dense`` (Dense-BN-ReLU),
    ``residual`` (a pre-norm MLP block with a skip), ``glu`` (gated linear unit); texts and
    series: ``conv1d`` (``units`` filters of ``kernel_sizes``), ``rnn`` (a GRU or LSTM of
    ``units``); both: ``attention`` (a transformer block, ``heads`` × ``key_dim`` wide, over
    feature tokens or over the steps). Each with ``dropout``."""
    nodes: list[Node] = []
    for block, kind in enumerate(blocks):
        params: dict[str, object] = {"dropout": dropout}
        if kind == "attention":
            params.update(heads=heads, key_dim=key_dim)
        elif kind == "conv1d":
            params.update(filters=units[block], kernel=kernel_sizes[block])
        elif kind == "rnn":
            params.update(units=units[block], cell=cell, bidirectional=bidirectional)
        else:
            params["units"] = units[block]
            if kind == "dense":
                params["batch_norm"] = batch_norm
        nodes.append(Node(kind, (len(nodes),), params))
    return frame.candidate("hyperparameters", tuple(nodes))
