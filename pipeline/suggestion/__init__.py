"""Suggestion algorithms (Katib's Suggestion services), one module each, one interface."""

from __future__ import annotations

from pipeline.suggestion.base import SearchContext, Suggestion


def algorithms() -> dict[str, type[Suggestion]]:
    """Every algorithm the embedded engine runs, by Katib's ``algorithmName``."""
    from pipeline.suggestion.darts import Darts
    from pipeline.suggestion.enas import Enas
    from pipeline.suggestion.evolution import Evolution
    from pipeline.suggestion.hyperband import Hyperband
    from pipeline.suggestion.optuna_samplers import OPTUNA_ALGORITHMS, OptunaSuggestion

    return {**dict.fromkeys(OPTUNA_ALGORITHMS, OptunaSuggestion),
            **{cls.name: cls for cls in (Darts, Enas, Evolution, Hyperband)}}


def create(context: SearchContext) -> Suggestion:
    """The algorithm named by the experiment's ``spec.algorithm.algorithmName``."""
    return algorithms()[context.experiment.spec.algorithm.algorithm_name](context)
