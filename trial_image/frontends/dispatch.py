"""From the trial CLI's flags to one :class:`CandidateSpec`: which front end the flags name
(hyperparameters, Katib's ENAS strings, a DARTS genotype), checked against the data's family
(an image, a table, a text, a series) so that a flag of another front end or family is refused
with its name."""

from __future__ import annotations

import argparse
from typing import Any

from trial_image.errors import InputError
from trial_image.numbers import parse_number


def _each(default: Any, overrides: dict[int, str], blocks: int, kind: type, flag: str
          ) -> list[Any]:
    """A value per block: ``default``, with ``--<flag>-N`` overrides (N from 1); a number is
    bounded as its flag is (``--kernel-size`` 1 to 31, widths 1 to 65,536)."""
    values = [default] * blocks
    high = 31 if flag == "kernel-size" else 65_536
    for index, raw in overrides.items():
        if not 1 <= index <= blocks:
            raise InputError(f"--{flag}-{index}: there are only {blocks} block(s)")
        value = parse_number(raw, integer=True) if kind is int else str(raw)
        if value is None or (kind is int and not 1 <= value <= high):
            raise InputError(f"--{flag}-{index}: invalid value {raw[:40]!r}"
                             + (f" (an integer from 1 to {high})" if kind is int else ""))
        values[index - 1] = value
    return values


def make_spec(args: argparse.Namespace, per_block: dict[str, dict[int, str]], data: Any) -> Any:
    from trial_image.families import TABLE
    from trial_image.frontends import enas, genotype, hyperparams
    from trial_image.spec import Frame, Head, Series, Table, Training

    # settings of one family, refused elsewhere rather than ignored
    if args.level != "global" and not data.family.windowed:
        raise InputError(f"--level is for series; {data.name} is {data.family} data")
    if args.numeric_encoding != "scaled" and data.family is not TABLE:
        raise InputError(f"--numeric-encoding is for tables' numeric columns; {data.name} is "
                         f"{data.family} data")
    table = Table(data.columns, args.embedding_size, args.sequence_length,
                  args.vocabulary_size, args.numeric_encoding) if data.columns else None
    frame = Frame(input_shape=data.input_shape, num_classes=data.num_classes,
                  input_scale=data.scale, training=Training.of(args),
                  head=Head(dense_units=args.dense_units, dropout=args.dropout, wide=args.wide),
                  task=data.task, table=table,
                  series=Series(data.input_shape[0], args.level) if data.family.windowed
                  else None)
    image_flags = [f for f in ("filters", "pooling") if getattr(args, f) is not None] + [
        f for f in ("filters", "pooling") if per_block[f]]
    block_flags = [f for f in ("block", "units") if getattr(args, f) is not None] + [
        f for f in ("units", "block") if per_block[f]]
    kernel_flags = ["kernel_size"] if args.kernel_size is not None or per_block["kernel-size"] \
        else []
    hp_flags = [f for f in ("num_blocks", "batch_norm") if getattr(args, f) is not None] + \
        image_flags + block_flags + kernel_flags
    blocks = 2 if args.num_blocks is None else args.num_blocks
    if blocks < 1:
        raise InputError(f"--num-blocks must be at least 1, got {blocks}")
    if data.family.blocks:
        return _block_spec(args, per_block, frame, data, blocks, image_flags + (
            [] if data.family.takes_kernel else kernel_flags))
    if block_flags:
        raise InputError(f"--block and --units are for tables, texts and series, not "
                         f"{data.name}")
    if args.architecture is not None or args.nn_config is not None:
        if args.architecture is None or args.nn_config is None:
            raise InputError("--architecture and --nn_config must be given together")
        if args.genotype is not None or hp_flags:
            raise InputError("--architecture/--nn_config cannot be combined with --genotype or "
                             f"block flags ({', '.join(hp_flags) or 'genotype'})")
        return enas.to_spec(args.architecture, args.nn_config, frame=frame)
    if args.genotype is not None:
        if hp_flags:
            raise InputError(f"--genotype cannot be combined with block flags "
                             f"({', '.join(hp_flags)})")
        return genotype.to_spec(args.genotype, num_layers=args.num_layers,
                                init_channels=args.init_channels,
                                stem_multiplier=args.stem_multiplier, frame=frame)
    return hyperparams.to_spec(
        num_blocks=blocks,
        filters=_each(args.filters or 32, per_block["filters"], blocks, int, "filters"),
        kernel_sizes=_each(args.kernel_size or 3, per_block["kernel-size"], blocks, int,
                           "kernel-size"),
        poolings=_each(args.pooling or "max", per_block["pooling"], blocks, str, "pooling"),
        batch_norm=True if args.batch_norm is None else args.batch_norm,
        frame=frame,
    )


def _block_spec(args: argparse.Namespace, per_block: dict[str, dict[int, str]], frame: Any,
                data: Any, blocks: int, wrong_flags: list[str]) -> Any:
    """A table's, a text's or a series' candidate: blocks, or ENAS strings of their
    operations."""
    from trial_image.frontends import enas, hyperparams

    if args.genotype is not None or wrong_flags:
        raise InputError(f"{data.name} is a {data.family}: its candidates are blocks (--block, "
                         f"--units) or ENAS strings of {data.family} operations, not "
                         f"{', '.join(wrong_flags) or 'genotypes'}")
    if args.architecture is not None or args.nn_config is not None:
        if args.architecture is None or args.nn_config is None:
            raise InputError("--architecture and --nn_config must be given together")
        return enas.to_spec(args.architecture, args.nn_config, frame=frame)
    allowed = data.family.blocks
    kinds = _each(args.block or allowed[0], per_block["block"], blocks, str, "block")
    wrong = [kind for kind in kinds if kind not in allowed]
    if wrong:
        raise InputError(f"--block {wrong[0]}: a {data.family}'s blocks are "
                         f"{', '.join(allowed)}")
    return hyperparams.to_block_spec(
        blocks=kinds, units=_each(args.units or 64, per_block["units"], blocks, int, "units"),
        kernel_sizes=_each(args.kernel_size or 3, per_block["kernel-size"], blocks, int,
                           "kernel-size"),
        dropout=args.block_dropout, batch_norm=True if args.batch_norm is None
        else args.batch_norm, heads=args.heads, key_dim=args.key_dim, cell=args.cell,
        bidirectional=args.bidirectional, frame=frame)
