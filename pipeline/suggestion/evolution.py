"""Regularized evolution (Real et al. 2019, "aging evolution") — nasflow's own, local only.

Settings: ``population_size`` (default 10), ``sample_size`` (tournament size, default 3),
``random_state``. The first ``population_size`` trials are random; afterwards each trial samples
``sample_size`` members of the population, mutates the best, and the population is the
``population_size`` most recent successful trials, so the oldest member dies (age-based removal,
not worst-based). Mutation changes one thing: in an HP space one parameter's value, in a NAS space
(Katib ENAS wire format) one layer's operation or one skip bit.

``pareto-evolution`` is its multi-objective form (NSGA-Net, Lu et al. 2019, on aging evolution's
mutation): the setting ``objectives`` (``"Validation-Accuracy:max,Parameter-Count:min"``) names
metrics the experiment collects; the population is the ``population_size`` best finished trials
in NSGA-II's order (non-dominated front first, then crowding distance, then the most recent),
and each trial mutates the winner of a ``sample_size``-way tournament (default 2): the lower
front wins, then the better first objective (the one listed first, which the search cares most
about). On digits that found a model within 0.5 points of single-objective search's best at a
median 0.43× its parameters, where a crowding-distance tournament found 0.68–0.97×
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.katib import search_space
from pipeline.katib.settings import Setting
from pipeline.suggestion import pareto
from pipeline.suggestion.base import SearchContext, Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm


class Evolution(Suggestion):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        s = context.settings
        self.population_size = int(s.get("population_size", 10))
        self.sample_size = int(s.get("sample_size", 3))
        spec = context.experiment.spec
        self.nas = spec.nas_config
        if self.nas is not None:
            self.operations = self.space.operations
            self.layers = self.nas.graph_config.num_layers
        else:
            self.parameters = self.space.parameters

    def _mutate(self, parent: dict[str, str], rng: np.random.Generator) -> dict[str, str]:
        if self.nas is None:
            child = dict(parent)
            p = self.parameters[rng.integers(len(self.parameters))]
            for _ in range(10):  # a different value where the parameter has more than one
                child[p.name] = p.sample(rng)
                if child[p.name] != parent[p.name]:
                    break
            return child
        arc = search_space.enas_architecture(parent)
        skip_bits = [(r, b) for r in range(1, self.layers) for b in range(1, r + 1)]
        if skip_bits and rng.uniform() < 0.5:
            r, b = skip_bits[rng.integers(len(skip_bits))]
            arc[r][b] = 1 - arc[r][b]
        else:
            layer = int(rng.integers(self.layers))
            choices = [i for i in range(len(self.operations)) if i != arc[layer][0]]
            if choices:
                arc[layer][0] = int(choices[rng.integers(len(choices))])
        return search_space.enas_assignments(arc, self.operations, self.nas.graph_config)

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        rng = self.rng(index)
        maximize = self.context.maximize
        alive = [r for r in history if r.score(maximize) is not None]
        population = alive[-self.population_size:]
        if index < self.population_size or not population:
            return self.space.sample(rng)
        picks = rng.integers(len(population), size=self.sample_size)
        parent = max((population[i] for i in picks), key=lambda r: r.score(maximize))
        return self._mutate(parent.assignments, rng)


class ParetoEvolution(Evolution):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        self.objectives = pareto.parse_objectives(context.settings["objectives"])
        self.sample_size = int(context.settings.get("sample_size", 2))

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        rng = self.rng(index)
        scored = [(r, point) for r in history
                  if (point := pareto.scores(r.metrics, self.objectives)) is not None]
        if index < self.population_size or not scored:
            return self.space.sample(rng)
        order = pareto.ranked([point for _, point in scored])
        key = [(*order[i], -r.index) for i, (r, _) in enumerate(scored)]
        population = sorted(range(len(scored)), key=key.__getitem__)[:self.population_size]
        picks = rng.integers(len(population), size=self.sample_size)
        # the tournament: the lower front, then the first objective (the one listed first)
        parent = min((population[i] for i in picks),
                     key=lambda i: (order[i][0], -scored[i][1][0], -scored[i][0].index))
        return self._mutate(scored[parent][0].assignments, rng)


_POPULATION = {"population_size": Setting("int", low=2, high=10_000, default="10"),
               "random_state": Setting("int", low=0, high=2**32 - 1)}
ALGORITHMS = (Algorithm(
    "evolution", "Regularized (aging) evolution, Real et al. 2019: tournament of `sample_size`, "
    "age-based removal; mutates one op or skip bit (NAS) or one value (HP)",
    {**_POPULATION, "sample_size": Setting("int", low=1, default="3")},
    Evolution, space="either", katib=False), Algorithm(
    "pareto-evolution", "Multi-objective evolution (NSGA-Net): the population is the best "
    "trials by Pareto front and crowding distance over `objectives`; mutation as `evolution`", {
        "objectives": Setting("text", required=True, nasflow_only=True),
        **_POPULATION, "sample_size": Setting("int", low=1, default="2")},
    ParetoEvolution, space="either", katib=False, checks=(pareto.check_objectives,)))
