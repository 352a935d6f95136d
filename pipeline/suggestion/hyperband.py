"""Hyperband (Li et al. 2018) as Katib configures it: ``r_l`` (maximum resource), ``eta``
(default 3) and ``resource_name`` (the parameter that carries the resource, e.g. epochs).

Trial indices map onto brackets and rungs in a fixed order. Rung 0 of a bracket samples random
configurations (each parameter from its prior: steps, log-uniform and normal respected) with
the bracket's smallest resource; each later rung re-runs the best
``1/eta`` of the previous rung with ``eta`` times the resource, which needs that rung finished
(the engine is told to WAIT). After the last bracket the suggestion is exhausted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.katib.manifest import Problem
from pipeline.katib.settings import Setting
from pipeline.suggestion.base import WAIT, SearchContext, Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm


class Hyperband(Suggestion):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        s = context.settings
        self.eta = float(s.get("eta", 3))
        self.r_max = float(s["r_l"])
        self.resource = s["resource_name"]
        self.parameters = {p.name: p for p in self.space.parameters}
        s_max = math.floor(math.log(self.r_max) / math.log(self.eta) + 1e-9)
        # (bracket, rung, first trial index of the rung, rung size, resource)
        self.rungs: list[tuple[int, int, int, int, float]] = []
        first = 0
        for bracket in range(s_max, -1, -1):
            n = math.ceil((s_max + 1) / (bracket + 1) * self.eta ** bracket)
            r = self.r_max * self.eta ** (-bracket)
            for rung in range(bracket + 1):
                size = math.floor(n * self.eta ** (-rung))
                if size < 1:
                    break
                self.rungs.append((bracket, rung, first, size, r * self.eta ** rung))
                first += size

    def _rung_of(self, index: int) -> int | None:
        for i, (_, _, first, size, _) in enumerate(self.rungs):
            if first <= index < first + size:
                return i
        return None

    def may_repeat(self, index: int) -> bool:
        """A later rung re-runs the best configurations of the previous one."""
        position = self._rung_of(index)
        return position is not None and self.rungs[position][1] > 0

    def _resource_value(self, resource: float) -> str:
        param = self.parameters[self.resource]
        value = min(resource, param.high) if param.kind in ("int", "double") else resource
        return str(round(value)) if param.kind == "int" else repr(float(value))

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str] | str | None:
        position = self._rung_of(index)
        if position is None:
            return None
        _, rung, first, _size, resource = self.rungs[position]
        if rung == 0:
            rng = self.rng(index)
            values = {name: p.sample(rng) for name, p in self.parameters.items()}
        else:
            _, _, prev_first, prev_size, _ = self.rungs[position - 1]
            previous = {r.index: r for r in history
                        if prev_first <= r.index < prev_first + prev_size}
            if len(previous) < prev_size:
                return WAIT
            ranked = sorted(previous.values(), key=lambda r: (
                r.score(self.context.maximize) is None, -(r.score(self.context.maximize) or 0),
                r.index))
            values = dict(ranked[index - first].assignments)
        values[self.resource] = self._resource_value(resource)
        return values


def _resource_and_parallelism(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    """Katib's hyperband service: the resource is a parameter, and a bracket's first rung runs
    in parallel, so parallelTrialCount must hold it."""
    if "resource_name" not in settings:
        return []
    out = []
    if settings["resource_name"] not in {p.name for p in spec.parameters or []}:
        out.append(Problem("spec.algorithm.algorithmSettings",
                           f"resource_name {settings['resource_name']!r} is not a parameter"))
    try:
        eta, r_l = float(settings.get("eta", 3)), float(settings["r_l"])
        needed = math.ceil(eta ** math.floor(math.log(r_l) / math.log(eta)))
    except (ValueError, ZeroDivisionError):
        needed = 0
    if (spec.parallel_trial_count or 3) < needed:
        out.append(Problem("spec.parallelTrialCount",
                           f"hyperband with eta={settings.get('eta', 3)}, r_l={settings['r_l']}"
                           f" needs at least {needed} parallel trials"))
    return out


ALGORITHMS = (Algorithm(
    "hyperband", "Li et al.'s brackets over `resource_name` up to `r_l` with `eta`; promotions "
    "wait for their rung", {
        "r_l": Setting("float", low=0, low_open=True, required=True),
        "resource_name": Setting("text", required=True),
        "eta": Setting("float", low=1, low_open=True, default="3")},
    Hyperband, checks=(_resource_and_parallelism,)),)
