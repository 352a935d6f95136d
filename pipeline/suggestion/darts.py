"""Katib's ``darts``: every trial gets the same three assignments; the trial runs the search.

The values are byte-for-byte what Katib's DARTS suggestion service emits (docs/katib.md §2):
JSON with ``"`` replaced by ``'``, user settings as strings, defaults as numbers, in Katib's order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from pipeline.search_space import darts_primitives
from pipeline.suggestion.base import Suggestion, TrialResult
from trial_image.darts.settings import KATIB_DEFAULTS


def _katib_json(value: object) -> str:
    return json.dumps(value).replace('"', "'")


class Darts(Suggestion):
    name = "darts"
    uses_history = False

    def may_repeat(self, index: int) -> bool:
        return True  # Katib's design: every trial runs a whole search (seeded by its name)

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        settings: dict[str, object] = dict(KATIB_DEFAULTS)
        for name, value in self.context.settings.items():
            settings[name] = None if value == "None" else value
        nas = self.context.experiment.spec.nas_config
        return {
            "algorithm-settings": _katib_json(settings),
            "search-space": _katib_json(darts_primitives(nas)),
            "num-layers": str(nas.graph_config.num_layers),
        }
