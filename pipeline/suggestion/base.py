"""The one small interface every suggestion algorithm implements (Katib's Suggestion).

An algorithm implements :meth:`Suggestion.suggest`: Katib-style string assignments for trial
``index``, given the finished trials it may use (``history``, in index order); ``None`` when it has
nothing more to suggest, :data:`WAIT` when it needs every earlier trial finished first (Hyperband's
rungs). Randomness comes from :meth:`Suggestion.rng` (seed × trial index × draw), so a seeded
search is the same whatever order parallel trials finish in.

The engine never calls ``suggest`` itself; it calls :meth:`Suggestion.propose`, which

* never hands out a configuration already proposed (finished, failed or running): it asks again
  (``self.attempt`` counts the draws, and :meth:`duplicate` lets a stateful algorithm learn that
  its draw repeats a known one), and after :data:`MAX_DRAWS` repeats takes a random configuration
  nobody ran yet; once a finite space is exhausted it returns ``None``. An algorithm whose own rule
  repeats configurations says so in :meth:`may_repeat` (DARTS: every trial gets the same values);
* and on resume replays every recorded trial through the same path (:meth:`replay`), so a resumed
  search suggests exactly what the uninterrupted one would have.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from pipeline.katib.search_space import Space, key

WAIT = "WAIT"
MAX_DRAWS = 100


def trial_name(experiment: str, seed: int, index: int) -> str:
    """Trial ``index``'s name in a search seeded with ``seed``: the same on the embedded engine
    and from nasflow's suggestion service on Katib, so a rerun finds its trials' runs."""
    return f"{experiment}-{hashlib.sha1(f'{experiment}/{seed}/{index}'.encode()).hexdigest()[:8]}"


@dataclass(frozen=True)
class SearchContext:
    """What an algorithm may know about the experiment."""

    experiment: Any  # V1beta1Experiment
    settings: dict[str, str]
    seed: int  # the run's --seed, or the algorithm's random_state setting when it has one

    @property
    def maximize(self) -> bool:
        return self.experiment.spec.objective.type == "maximize"

    @property
    def objective(self) -> str:
        return self.experiment.spec.objective.objective_metric_name


@dataclass(frozen=True)
class TrialResult:
    """A finished trial as algorithms see it: its assignments and objective value."""

    index: int
    assignments: dict[str, str]
    status: str
    value: float | None  # None: failed, or no numeric objective
    # every metric the experiment collects (objective and additional), read with its strategy;
    # what multi-objective algorithms rank by
    metrics: Mapping[str, float | None] = field(default_factory=dict)

    def score(self, maximize: bool) -> float | None:
        """Higher is better, whatever the objective's direction."""
        if self.value is None:
            return None
        return self.value if maximize else -self.value


Seen = Callable[[int], "Sequence[TrialResult] | None"]  # upto -> finished trials before it


class Suggestion(ABC):
    # False: suggestions ignore results (random, grid...): the engine never waits for history.
    uses_history: ClassVar[bool] = True

    def __init__(self, context: SearchContext) -> None:
        self.context = context
        self.space = Space.of(context.experiment.spec)
        self.attempt = 0  # the draw for the current trial: 0, then 1, 2... after repeats
        self.proposed: dict[str, int] = {}  # configuration -> the first trial given it

    def rng(self, index: int, salt: int = 0) -> np.random.Generator:
        return np.random.default_rng([self.context.seed, index, salt, self.attempt])

    @abstractmethod
    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str] | str | None:
        """Assignments for trial ``index``; None when exhausted; WAIT for more history."""

    def may_repeat(self, index: int) -> bool:
        """Whether the algorithm's own rule gives trial ``index`` an earlier configuration."""
        return False

    def duplicate(self, index: int, assignments: dict[str, str],
                  history: Sequence[TrialResult]) -> None:
        """Trial ``index``'s draw repeats a proposed configuration and will be drawn again."""
        return None  # algorithms without state have nothing to learn from it

    def parent(self, index: int) -> int | None:
        """The trial whose checkpoint trial ``index`` starts from (PBT); None: from scratch."""
        return None

    def adopt(self, index: int, assignments: dict[str, str]) -> None:
        """Trial ``index`` gets ``assignments``, which ``suggest`` did not draw (the fallback after
        :data:`MAX_DRAWS` repeats, or a recorded trial that replays differently)."""
        return None  # algorithms without state have nothing to update

    # ---- what the engine calls ---------------------------------------------------------------

    def propose(self, index: int, history: Sequence[TrialResult]) -> dict[str, str] | str | None:
        """``suggest`` without repeats; see the module docstring."""
        if not self.may_repeat(index) and len(self.proposed) >= self.space.size:
            return None  # a finite space, every configuration handed out
        for self.attempt in range(MAX_DRAWS):
            assignments = self.suggest(index, history)
            if not isinstance(assignments, dict):
                return assignments  # None or WAIT
            if key(assignments) not in self.proposed or self.may_repeat(index):
                return self._record(index, assignments)
            self.duplicate(index, assignments, history)
        self.attempt = MAX_DRAWS
        fresh = self.space.unvisited(self.proposed, self.rng(index, salt=0xFA11))
        if fresh is None:
            return None  # every configuration of a finite space has been proposed
        self.adopt(index, fresh)
        return self._record(index, fresh)

    def propose_in_turn(self, index: int, seen: Seen, parallel: int
                        ) -> dict[str, str] | str | None:
        """Trial ``index`` as both engines (embedded, and Katib through the suggestion service)
        propose it: from the trials before ``index - parallel + 1`` (with ``parallel`` trials
        running, those may have finished), or from every trial before it if the algorithm must
        WAIT for them. ``seen(upto)``: the finished trials before ``upto``, None while they are
        not all known (the embedded engine then waits: WAIT)."""
        for upto in (index - parallel + 1, index):
            history = seen(upto) if self.uses_history else []
            if history is None:
                return WAIT
            assignments = self.propose(index, history)
            if assignments != WAIT:
                return assignments
        return WAIT

    def replay(self, index: int, assignments: dict[str, str], seen: Seen, parallel: int
               ) -> bool:
        """Rebuild the state trial ``index`` left (resume): propose it again in turn, from the
        history it had. False if the algorithm proposes something else now (a library
        changed); then the recorded ``assignments`` are adopted all the same."""
        again = self.propose_in_turn(index, seen, parallel)
        if again == assignments:
            return True
        if isinstance(again, dict) and self.proposed.get(key(again)) == index:
            del self.proposed[key(again)]
        self.adopt(index, assignments)
        self._record(index, assignments)
        return False

    def _record(self, index: int, assignments: dict[str, str]) -> dict[str, str]:
        self.proposed.setdefault(key(assignments), index)
        return assignments
