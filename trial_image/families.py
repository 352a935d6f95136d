"""What a model reads: an image, a table, a text (a table of one text column) or a series
(a window of past values). A family knows the operations its candidates' nodes may use, the
blocks of its hyperparameter front end, the form in which its model is served, how its head
pools, what compression can make of it and how the architecture figure names its input, so
that no other module compares a family's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Family:
    name: str
    operations: frozenset[str]  # the node operations of its candidates (trial_image.spec.OPS)
    blocks: tuple[str, ...] = ()  # --block kinds, the default first; (): images' conv blocks
    takes_kernel: bool = True  # --kernel-size means something to it
    tensor_input: str | None = None  # the served model's one input; None: one per column
    pooling: str | None = None  # how the head pools the last node: "2d", "1d", None
    augments: bool = False  # random shifts of the training batches (--augment light)
    adapts: bool = True  # its first layers adapt on the training split
    windowed: bool = False  # a window of a series' past values
    one_column: bool = False  # its table holds a single feature column
    compression: str = ""  # why no compressed variant can be made (empty: they can)
    unmakeable: dict[str, str] = field(default_factory=dict)  # variant -> why it cannot be
    label: str = ""  # the architecture figure's input box ({shape}: 8×8×1, {first}: 30)
    wide_paths: tuple[str, ...] = ("none", "linear")  # the head's (trial_image.spec.WIDE_PATHS)
    no_wide: str = ""  # why it has no wide path

    def __str__(self) -> str:
        return self.name

    def augment(self, requested: str) -> str:
        """The augmentation its batches get when ``requested`` is asked for."""
        return requested if self.augments else "none"

    def describe(self, input_shape: tuple[int, ...]) -> str:
        """The architecture figure's input box."""
        return self.label.format(shape="×".join(map(str, input_shape)),
                                 first=input_shape[0] if input_shape else 0)


IMAGE_OPS = frozenset({"conv", "sep_conv", "depthwise_conv", "pool", "factorized_reduce",
                       "identity"})
TABLE_OPS = frozenset({"dense", "residual", "glu", "attention", "identity"})
SEQUENCE_OPS = frozenset({"conv1d", "rnn", "attention", "identity"})
TABLE_BLOCKS = ("dense", "residual", "glu", "attention")
SEQUENCE_BLOCKS = ("conv1d", "rnn", "attention")

IMAGE = Family("image", IMAGE_OPS, tensor_input="image", pooling="2d", augments=True,
               adapts=False, label="image {shape}", wide_paths=("none",), no_wide=(
                   "a linear map of raw pixels adds nothing a convolution cannot learn"))
TABLE = Family("table", TABLE_OPS, TABLE_BLOCKS, takes_kernel=False, unmakeable={
    "int8-full": "int8-full takes one int8 tensor; a table's model reads columns: no int8-full "
                 "variant"}, label="table, {first} columns")
TEXT = Family("text", SEQUENCE_OPS, SEQUENCE_BLOCKS, pooling="1d", compression=(
    "LiteRT has no builtin operations for its tokenizer (StringLower, StringSplit)"),
    one_column=True, label="text, tokens embedded")
SERIES = Family("series", SEQUENCE_OPS, SEQUENCE_BLOCKS, tensor_input="window", pooling="1d",
                windowed=True, label="window of {first} values",
                wide_paths=("none", "linear", "decomposed", "kernels"))
FAMILIES = {family.name: family for family in (IMAGE, TABLE, TEXT, SERIES)}
BLOCKS = tuple(dict.fromkeys(b for family in FAMILIES.values() for b in family.blocks))


def family_of(name: str | None) -> Family:
    """The family a run's ``nasflow.family`` tag names (runs before the tag: images)."""
    return FAMILIES[name or "image"]
