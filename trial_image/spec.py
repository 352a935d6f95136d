"""The one candidate description every front end produces and the one builder builds.

A candidate is a small DAG. Index 0 is the (rescaled) network input; node ``i`` (1-based) applies
one operation to the merge of its inputs, which are earlier indices. The last node feeds the head.
It is plain data (JSON round-trip), so the engine, MLflow and the registry can store it as is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from trial_image.errors import InputError

# op name -> (required params, optional params with defaults). Convolutions are ReLU-Conv-BN
# (pre-activation), as in Katib's ENAS op library and in DARTS; padding is always "same".
OPS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "conv": (("filters", "kernel"), {"stride": 1, "dilation": 1, "batch_norm": True}),
    "sep_conv": (
        ("filters", "kernel"),
        {"stride": 1, "dilation": 1, "depth_multiplier": 1, "batch_norm": True},
    ),
    "depthwise_conv": (("kernel",), {"stride": 1, "depth_multiplier": 1, "batch_norm": True}),
    "pool": (("pool_type", "size"), {"stride": None}),
    "factorized_reduce": (("filters",), {}),
    "identity": ((), {}),
}
MERGES = ("concat", "add")
OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine")  # cosine: decays to 0 over all epochs
AUGMENTATIONS = ("none", "light")  # light: random shifts of up to 1/8 of the image


@dataclass(frozen=True)
class Node:
    op: str
    inputs: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    merge: str = "concat"


@dataclass(frozen=True)
class Head:
    """Global average pooling, then an optional hidden dense layer, then softmax."""

    dense_units: int = 0
    dropout: float = 0.0


@dataclass(frozen=True)
class Training:
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 10
    lr_schedule: str = "constant"
    augment: str = "none"

    @classmethod
    def of(cls, flags: Any) -> Training:
        """From the trial CLI's flags of the same names (``--learning-rate`` and so on)."""
        return cls(optimizer=flags.optimizer, learning_rate=flags.learning_rate,
                   momentum=flags.momentum, batch_size=flags.batch_size, epochs=flags.epochs,
                   lr_schedule=flags.lr_schedule, augment=flags.augment)


@dataclass(frozen=True)
class Frame:
    """What a candidate takes from its trial, whatever its front end: the data's shape, classes
    and scaling, the head and the training. Front ends describe only the nodes;
    :meth:`candidate` is the one place a :class:`CandidateSpec` is put together."""

    input_shape: tuple[int, int, int]
    num_classes: int
    input_scale: float = 1.0
    head: Head = Head()
    training: Training = Training()

    def candidate(self, source: str, nodes: Sequence[Node]) -> CandidateSpec:
        return CandidateSpec(input_shape=self.input_shape, num_classes=self.num_classes,
                             nodes=tuple(nodes), head=self.head, training=self.training,
                             input_scale=self.input_scale, source=source)


@dataclass(frozen=True)
class CandidateSpec:
    input_shape: tuple[int, int, int]
    num_classes: int
    nodes: tuple[Node, ...]
    head: Head = Head()
    training: Training = Training()
    input_scale: float = 1.0
    source: str = "hyperparameters"

    def __post_init__(self) -> None:
        validate(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @property
    def candidate_id(self) -> str:
        """Stable short hash of the architecture and head (not training) for de-duplication."""
        arch = {"nodes": self.to_dict()["nodes"], "head": asdict(self.head)}
        return hashlib.sha1(json.dumps(arch, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CandidateSpec:
        try:
            return cls(
                input_shape=tuple(data["input_shape"]),
                num_classes=int(data["num_classes"]),
                nodes=tuple(
                    Node(n["op"], tuple(n["inputs"]), dict(n.get("params", {})),
                         n.get("merge", "concat"))
                    for n in data["nodes"]
                ),
                head=Head(**data.get("head", {})),
                training=Training(**data.get("training", {})),
                input_scale=float(data.get("input_scale", 1.0)),
                source=data.get("source", "hyperparameters"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"malformed candidate spec: {exc}") from exc


def with_defaults(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params of ``op`` with its optional defaults filled in."""
    return {**OPS[op][1], **params}


def validate(spec: CandidateSpec) -> None:
    """Reject a spec the builder cannot build, naming the node and the reason."""
    if len(spec.input_shape) != 3 or min(spec.input_shape) < 1:
        raise InputError(f"input_shape must be (height, width, channels), got {spec.input_shape}")
    if spec.num_classes < 2:
        raise InputError(f"num_classes must be at least 2, got {spec.num_classes}")
    if not spec.nodes:
        raise InputError("the candidate has no layers")
    for index, node in enumerate(spec.nodes, start=1):
        where = f"node {index} ({node.op})"
        if node.op not in OPS:
            raise InputError(f"{where}: unknown operation; known: {', '.join(OPS)}")
        required, optional = OPS[node.op]
        missing = [p for p in required if p not in node.params]
        unknown = [p for p in node.params if p not in required and p not in optional]
        if missing:
            raise InputError(f"{where}: missing parameter(s) {', '.join(missing)}")
        if unknown:
            raise InputError(f"{where}: unknown parameter(s) {', '.join(unknown)}")
        if node.merge not in MERGES:
            raise InputError(f"{where}: merge must be one of {MERGES}, got {node.merge!r}")
        if not node.inputs or any(not 0 <= i < index for i in node.inputs):
            raise InputError(f"{where}: inputs {list(node.inputs)} must be earlier nodes")
        for name in ("filters", "kernel", "stride", "dilation", "depth_multiplier", "size"):
            value = node.params.get(name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputError(f"{where}: {name} must be a positive integer, got {value!r}")
        if node.op == "pool" and node.params["pool_type"] not in ("max", "avg"):
            raise InputError(f"{where}: pool_type must be max or avg")
    t = spec.training
    if t.optimizer not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {t.optimizer!r}")
    if not t.learning_rate > 0:
        raise InputError(f"learning rate must be positive, got {t.learning_rate}")
    if t.batch_size < 1 or t.epochs < 1:
        raise InputError("batch size and epochs must be at least 1")
    if t.lr_schedule not in LR_SCHEDULES or t.augment not in AUGMENTATIONS:
        raise InputError(f"learning-rate schedule must be one of {', '.join(LR_SCHEDULES)} and "
                         f"augmentation one of {', '.join(AUGMENTATIONS)}")
    if not 0 <= spec.head.dropout < 1:
        raise InputError(f"dropout must be in [0, 1), got {spec.head.dropout}")
    if spec.head.dense_units < 0:
        raise InputError(f"dense units must be >= 0, got {spec.head.dense_units}")
