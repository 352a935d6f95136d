"""Suggestion algorithms (Katib's Suggestion services): one interface (``base``), one module per
algorithm family, each declaring what it serves (``registry``)."""

from __future__ import annotations

from pipeline.suggestion.base import SearchContext, Suggestion
from pipeline.suggestion.registry import algorithms


def create(context: SearchContext) -> Suggestion:
    """The algorithm named by the experiment's ``spec.algorithm.algorithmName``."""
    declared = algorithms()[context.experiment.spec.algorithm.algorithm_name]
    if declared.suggestion is None:
        raise ValueError(f"the embedded engine cannot run {declared.name}: "
                         f"{declared.local_limit}")
    return declared.suggestion(context)
