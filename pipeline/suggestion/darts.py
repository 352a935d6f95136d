"""Katib's ``darts``: every trial gets the same three assignments; the trial runs the search.

The values are byte-for-byte what Katib's DARTS suggestion service emits (docs/katib.md §2):
JSON with ``"`` replaced by ``'``, user settings as strings, defaults as numbers, in Katib's order.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.katib.manifest import Problem
from pipeline.katib.search_space import darts_primitives
from pipeline.katib.settings import Setting
from pipeline.suggestion.base import Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm
from trial_image.contract import DARTS_DEFAULTS, DARTS_PRIMITIVES


def _katib_json(value: object) -> str:
    return json.dumps(value).replace('"', "'")


class Darts(Suggestion):
    uses_history = False

    def may_repeat(self, index: int) -> bool:
        return True  # Katib's design: every trial runs a whole search (seeded by its name)

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        settings: dict[str, object] = dict(DARTS_DEFAULTS)
        for name, value in self.context.settings.items():
            settings[name] = None if value == "None" else value
        nas = self.context.experiment.spec.nas_config
        return {
            "algorithm-settings": _katib_json(settings),
            "search-space": _katib_json(darts_primitives(nas)),
            "num-layers": str(nas.graph_config.num_layers),
        }


def _known_primitives(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    """Katib accepts any ``<type>_<f>x<f>``, but its trial (and nasflow's) only knows DARTS'
    primitives: ``max_pooling_5x5`` would fail every trial with a KeyError."""
    out = []
    for i, op in enumerate((spec.nas_config.operations if spec.nas_config else None) or []):
        if op.operation_type == "skip_connection" or not op.parameters:
            continue
        space = op.parameters[0].feasible_space
        unknown = [f"{op.operation_type}_{f}x{f}" for f in (space.list if space else None) or []
                   if f"{op.operation_type}_{f}x{f}" not in DARTS_PRIMITIVES]
        if unknown:
            out.append(Problem(f"spec.nasConfig.operations[{i}]",
                               f"DARTS has no primitive {', '.join(unknown)} (known: "
                               f"{', '.join(DARTS_PRIMITIVES)})"))
    return out


def _overhead(settings: Mapping[str, str]) -> float:
    """A DARTS trial's seconds: tracing the super-net's steps, then each search epoch with its
    MLflow artifacts (Katib's default: 50 epochs); the figures: docs/benchmarks.md."""
    return 16 + 2.5 * int(settings.get("num_epochs", DARTS_DEFAULTS["num_epochs"]))


_NUMBER = Setting("float", low=0)
ALGORITHMS = (Algorithm(
    "darts", "Katib's three assignments (`algorithm-settings`, `search-space`, `num-layers`), "
    "byte for byte; the trial runs the search (`python -m trial_image darts`)", {
        "num_epochs": Setting("int", low=1), "w_lr": _NUMBER, "w_lr_min": _NUMBER,
        "w_momentum": _NUMBER, "w_weight_decay": _NUMBER, "w_grad_clip": _NUMBER,
        "alpha_lr": _NUMBER, "alpha_weight_decay": _NUMBER, "batch_size": Setting("int", low=1),
        "num_workers": Setting("int", low=0, honoured=None), "init_channels": Setting("int", low=1),
        "print_step": Setting("int", low=1), "num_nodes": Setting("int", low=1),
        "stem_multiplier": Setting("int", low=1),
        "unrolled": Setting("choice", choices=("true", "false"), nasflow_only=True),
        "max_skip_connections": Setting("int", low=0, none_ok=True, nasflow_only=True),
        "warmup_epochs": Setting("int", low=0, nasflow_only=True)},
    Darts, space="nas", outputs=frozenset({"algorithm-settings", "search-space", "num-layers"}),
    passes_unknown_settings=True, checks=(_known_primitives,), trial_overhead=_overhead,
    ignored_note="the trial's tf.data pipeline prefetches on its own threads"),)
