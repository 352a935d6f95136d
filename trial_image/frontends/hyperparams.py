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
