"""Katib's DARTS trial parameters: ``--algorithm-settings``, ``--search-space``, ``--num-layers``.

Values arrive as Katib's suggestion service writes them (docs/katib.md §2): a single-quoted JSON
dict with user values as strings and defaults as numbers, a single-quoted list of primitive names,
``"None"`` as null, with or without one layer of surrounding double quotes. The defaults here
are Katib's; the engine's ``darts`` suggestion emits them from this table too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from trial_image.errors import InputError
from trial_image.frontends.genotype import PRIMITIVES
from trial_image.frontends.wire import parse_literal, strip_outer_quotes, to_int
from trial_image.numbers import parse_number

# Katib's defaults, in Katib's order (pkg/suggestion/v1beta1/nas/darts/service.py).
KATIB_DEFAULTS: dict[str, Any] = {
    "num_epochs": 50, "w_lr": 0.025, "w_lr_min": 0.001, "w_momentum": 0.9,
    "w_weight_decay": 3e-4, "w_grad_clip": 5.0, "alpha_lr": 3e-4, "alpha_weight_decay": 1e-3,
    "batch_size": 128, "num_workers": 4, "init_channels": 16, "print_step": 50, "num_nodes": 4,
    "stem_multiplier": 3,
}
# nasflow's additions (Katib passes unknown settings through to the trial):
#   unrolled: the second-order (unrolled) architecture gradient instead of the first-order one.
#   max_skip_connections: DARTS+ early stopping against the collapse to skip connections: the
#     search stops once the normal cell's genotype has more skips than this ("None": never).
#   warmup_epochs: the first epochs train the weights only, α stays uniform (as PC-DARTS and
#     P-DARTS do), so parameter-free operations do not win just because convolutions are
#     still untrained.
EXTRA_DEFAULTS: dict[str, Any] = {"unrolled": "false", "max_skip_connections": 2,
                                  "warmup_epochs": 0}
NONE = "none"


@dataclass(frozen=True)
class DartsSettings:
    num_epochs: int
    w_lr: float
    w_lr_min: float
    w_momentum: float
    w_weight_decay: float
    w_grad_clip: float
    alpha_lr: float
    alpha_weight_decay: float
    batch_size: int
    num_workers: int  # accepted, unused: tf.data prefetches on its own threads
    init_channels: int
    print_step: int
    num_nodes: int
    stem_multiplier: int
    unrolled: bool
    max_skip_connections: int | None
    warmup_epochs: int


def _bool(value: Any, name: str) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise InputError(f"--algorithm-settings: {name} must be true or false, got {value!r}")


# The counts of the settings: far above a sensible search, far below what exhausts memory.
UPPER_BOUNDS = {"num_epochs": 100_000, "batch_size": 65_536, "init_channels": 1024,
                "print_step": 2**31, "num_nodes": 32, "stem_multiplier": 16}


def parse_settings(value: str) -> DartsSettings:
    raw = parse_literal(value, "--algorithm-settings")
    if not isinstance(raw, dict):
        raise InputError("--algorithm-settings: expected a dict like {'num_epochs': '1', ...}")
    known = {**KATIB_DEFAULTS, **EXTRA_DEFAULTS}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise InputError(f"--algorithm-settings: unknown setting(s) {', '.join(unknown)}; "
                         f"known: {', '.join(known)}")
    merged = {**known, **{k: v for k, v in raw.items()}}
    out: dict[str, Any] = {}
    for f in fields(DartsSettings):
        v = merged[f.name]
        where = f"--algorithm-settings: {f.name}"
        if f.name == "unrolled":
            out[f.name] = _bool(v, f.name)
        elif f.name == "max_skip_connections":
            out[f.name] = None if v in (None, "None") else to_int(v, where)
        elif v is None or v == "None":
            raise InputError(f"{where} cannot be None")
        elif f.type == "int":
            out[f.name] = to_int(v, where)
        else:
            number = v if isinstance(v, (int, float)) and not isinstance(v, bool) \
                else parse_number(str(v)[:41])
            if number is None or not math.isfinite(number):
                raise InputError(f"{where}: expected a number (finite), got {str(v)[:40]!r}")
            out[f.name] = float(number)
    settings = DartsSettings(**out)
    for name, high in UPPER_BOUNDS.items():
        if getattr(settings, name) < 1:
            raise InputError(f"--algorithm-settings: {name} must be >= 1")
        if getattr(settings, name) > high:
            raise InputError(f"--algorithm-settings: {name} must be <= {high}")
    for name in ("w_lr", "w_lr_min", "w_momentum", "w_weight_decay", "w_grad_clip", "alpha_lr",
                 "alpha_weight_decay", "num_workers"):
        if not 0 <= getattr(settings, name) <= 1e6:
            raise InputError(f"--algorithm-settings: {name} must be from 0 to 1e6")
    return settings


def parse_search_space(value: str) -> tuple[str, ...]:
    """Katib's primitive list; ``none`` is appended as Katib's trial does."""
    raw = parse_literal(value, "--search-space")
    if not isinstance(raw, list | tuple) or not raw:
        raise InputError("--search-space: expected a non-empty list like ['max_pooling_3x3']")
    unknown = [p for p in raw if p not in PRIMITIVES and p != NONE]
    if unknown:
        raise InputError(f"--search-space: unknown primitive(s) {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(PRIMITIVES)}")
    ordered = tuple(dict.fromkeys(p for p in raw if p != NONE))
    if not ordered:
        raise InputError("--search-space: needs at least one primitive besides 'none'")
    return (*ordered, NONE)


def parse_num_layers(value: str) -> int:
    layers = to_int(strip_outer_quotes(str(value)), "--num-layers")
    if not 1 <= layers <= 64:
        raise InputError("--num-layers must be from 1 to 64")
    return layers
