"""The one small interface every suggestion algorithm implements (Katib's Suggestion).

The engine asks for trial ``index`` with the finished trials it may use (``history``, in index
order) and gets Katib-style string assignments back, ``None`` when the algorithm has nothing more
to suggest, or :data:`WAIT` when it needs every earlier trial finished first (Hyperband's rungs).
Algorithms draw randomness from :meth:`Suggestion.rng` (seed × trial index), so a seeded search
is reproducible whatever order parallel trials finish in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from pipeline.engine.state import TrialRecord

WAIT = "WAIT"


@dataclass(frozen=True)
class SearchContext:
    """What an algorithm may know about the experiment."""

    experiment: Any  # V1beta1Experiment
    settings: dict[str, str]
    seed: int

    @property
    def maximize(self) -> bool:
        return self.experiment.spec.objective.type == "maximize"

    @property
    def objective(self) -> str:
        return self.experiment.spec.objective.objective_metric_name


class Suggestion(ABC):
    name: ClassVar[str]
    # False: suggestions ignore results (random, grid...): the engine never waits for history.
    uses_history: ClassVar[bool] = True

    def __init__(self, context: SearchContext) -> None:
        self.context = context

    def rng(self, index: int, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.context.seed, index, salt])

    @abstractmethod
    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str] | str | None:
        """Assignments for trial ``index``; None when exhausted; WAIT for more history."""

    def replay(self, index: int, history: Sequence[TrialResult],
               assignments: dict[str, str]) -> None:
        """Rebuild internal state on resume: trial ``index`` was given ``assignments``.

        Algorithms that keep no state beyond the history need not override it.
        """
        return None


@dataclass(frozen=True)
class TrialResult:
    """A finished trial as algorithms see it: its assignments and objective value."""

    index: int
    assignments: dict[str, str]
    status: str
    value: float | None  # None: failed, or no numeric objective

    @classmethod
    def of(cls, record: TrialRecord, value: float | None) -> TrialResult:
        return cls(record.index, record.assignments, record.status, value)

    def score(self, maximize: bool) -> float | None:
        """Higher is better, whatever the objective's direction."""
        if self.value is None:
            return None
        return self.value if maximize else -self.value
