"""Population-based training (Jaderberg et al. 2017) with Katib's ``pbt`` settings:
``n_population``, ``truncation_threshold``, ``resample_probability``, ``suggestion_trial_dir``.

Trials come in generations of ``n_population`` members; member ``m`` of generation ``g`` is
trial ``g × n_population + m``. Generation 0 samples the space. Each later member continues
member ``m`` of the previous generation once that whole generation has finished:

* a member ranked in the top ``1 - truncation_threshold`` keeps its hyperparameters and goes on
  training from its own checkpoint;
* one in the bottom ``truncation_threshold`` (or failed) *exploits*: it takes the checkpoint of
  a member drawn from the top ``truncation_threshold`` and *explores* from that member's
  hyperparameters: each is resampled with ``resample_probability``, or, without it, perturbed as
  Katib does (numbers × 0.8 or × 1.2 within their range, lists to a neighbouring value).

Every trial trains ``--epochs`` more epochs from the checkpoint it starts from. Checkpoints live
in ``suggestion_trial_dir``: on Katib a volume every trial mounts its own folder of there; the
embedded engine gives each trial ``<workdir>/<experiment>/checkpoints/<trial>`` in its place and
copies the parent's folder into it before the trial starts (:meth:`PBT.parent`). Katib runs
Katib's own pbt service, which differs: it copies the *exploited* member's checkpoint, not the
better member's, and names trials by UUID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from pipeline.katib.manifest import Problem
from pipeline.katib.search_space import Parameter
from pipeline.katib.settings import Setting
from pipeline.suggestion.base import WAIT, SearchContext, Seen, Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm


class PBT(Suggestion):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        s = context.settings
        self.population = int(s["n_population"])
        self.truncation = float(s["truncation_threshold"])
        self.resample = (float(s["resample_probability"])
                         if s.get("resample_probability", "None") != "None" else None)
        self.parents: dict[int, int] = {}  # trial -> the trial whose checkpoint it continues

    def may_repeat(self, index: int) -> bool:
        return index >= self.population  # a member that ranks well keeps its hyperparameters

    def parent(self, index: int) -> int | None:
        return self.parents.get(index)

    def propose_in_turn(self, index: int, seen: Seen, parallel: int
                        ) -> dict[str, str] | str | None:
        """A generation waits for the previous one only, whatever ``parallel`` is."""
        history = seen(index - index % self.population)
        return WAIT if history is None else self.propose(index, history)

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str] | str | None:
        generation, member = divmod(index, self.population)
        if generation == 0:
            return self.space.sample(self.rng(index))
        first = (generation - 1) * self.population
        previous = [r for r in history if r.index >= first]
        if len(previous) < self.population:
            return WAIT
        maximize = self.context.maximize
        ranked = sorted(previous, key=lambda r: (r.score(maximize) is None,
                                                 -(r.score(maximize) or 0.0), r.index))
        cut = int(self.population * self.truncation)
        bottom = {r.index for r in ranked[len(ranked) - cut:]} if cut else set()
        top = [r for r in ranked[:max(cut, 1)] if r.value is not None]
        own = previous[member]
        if (own.value is not None and own.index not in bottom) or not top:
            self.parents[index] = own.index
            return dict(own.assignments)
        rng = self.rng(index)
        better = top[int(rng.integers(len(top)))]
        self.parents[index] = better.index
        return {p.name: self._explore(p, better.assignments[p.name], rng)
                for p in self.space.parameters}

    def _explore(self, p: Parameter, value: str, rng: np.random.Generator) -> str:
        if self.resample is not None:
            return p.sample(rng) if rng.uniform() < self.resample else value
        if p.choices:
            i = p.choices.index(value) + (1 if rng.uniform() < 0.5 else -1)
            return p.choices[i % len(p.choices)]
        factor = 0.8 if rng.uniform() < 0.5 else 1.2
        number = min(max(float(value) * factor, p.low), p.high)
        return str(int(number)) if p.kind == "int" else repr(number)


def _trial_dir(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    """Katib mounts each trial's folder of the volume at ``suggestion_trial_dir``: an absolute
    folder of the container, not its root."""
    path = PurePosixPath(settings.get("suggestion_trial_dir", "/x"))
    if not path.is_absolute() or path == PurePosixPath("/") or ".." in path.parts:
        return [Problem("spec.algorithm.algorithmSettings", f"suggestion_trial_dir {str(path)!r} "
                        "must be an absolute folder of the trial's container, not / and "
                        "without '..'")]
    return []


ALGORITHMS = (Algorithm(
    "pbt", "population-based training: generations of `n_population` members, the worst "
    "exploit a better member's checkpoint and explore its hyperparameters", {
        "suggestion_trial_dir": Setting("text", required=True),
        "n_population": Setting("int", low=5, high=10_000, required=True),
        "truncation_threshold": Setting("float", low=0, high=1, required=True),
        "resample_probability": Setting("float", low=0, high=1, none_ok=True)},
    PBT, checks=(_trial_dir,)),)
