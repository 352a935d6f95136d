"""Suggestion algorithms (Katib's Suggestion services), one module each, one interface."""

from __future__ import annotations

from pipeline.suggestion.base import SearchContext, Suggestion


def create(context: SearchContext) -> Suggestion:
    """The algorithm named by the experiment's ``spec.algorithm.algorithmName``."""
    from pipeline.suggestion.darts import Darts
    from pipeline.suggestion.enas import Enas
    from pipeline.suggestion.evolution import Evolution
    from pipeline.suggestion.hyperband import Hyperband
    from pipeline.suggestion.optuna_samplers import OPTUNA_ALGORITHMS, OptunaSuggestion

    name = context.experiment.spec.algorithm.algorithm_name
    if name in OPTUNA_ALGORITHMS:
        return OptunaSuggestion(context)
    classes = {cls.name: cls for cls in (Darts, Enas, Evolution, Hyperband)}
    return classes[name](context)
