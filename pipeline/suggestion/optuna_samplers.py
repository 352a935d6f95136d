"""Katib's hyperparameter algorithms on Optuna's samplers (as Katib's optuna/goptuna services).

Each trial is asked from one in-memory study and told its objective once it is in the history;
Katib's ``algorithmSettings`` keep their names and meaning:

==========================  ============================================================
random                      RandomSampler(random_state)
tpe                         TPESampler(gamma, prior_weight, n_EI_candidates, random_state)
multivariate-tpe            TPESampler(multivariate, n_startup_trials, n_ei_candidates)
grid                        GridSampler over every value (double parameters need a step)
cmaes                       CmaEsSampler(sigma, random_state); ``restart_strategy`` is
                            accepted but, as in Optuna >= 4.4, has no effect
sobol                       QMCSampler(sobol, scrambled)
bayesianoptimization        GPSampler(n_initial_points) - a Gaussian process with expected
                            improvement; base_estimator/acq_* are skopt's and only GP/EI exist
nsga2                       NSGAIISampler(population_size, crossover_prob) over the setting
                            ``objectives`` (nasflow's own: a study with one direction each)
==========================  ============================================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from pipeline.katib.manifest import Problem
from pipeline.katib.search_space import ENUMERATE_LIMIT, Space, key
from pipeline.katib.settings import Setting
from pipeline.suggestion import pareto
from pipeline.suggestion.base import SearchContext, Suggestion, TrialResult
from pipeline.suggestion.registry import Algorithm

HISTORY_FREE = ("random", "grid", "sobol")
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _sampler(name: str, settings: dict[str, str], seed: int, grid: dict[str, list]):
    s = settings
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "tpe":
        options: dict = {"n_ei_candidates": int(s.get("n_EI_candidates", 24))}
        if "gamma" in s:  # hyperopt's gamma is a fraction; Optuna's, a function of n
            options["gamma"] = lambda n, g=float(s["gamma"]): min(math.ceil(g * n), 25)
        if "prior_weight" in s:
            options["prior_weight"] = float(s["prior_weight"])
        return optuna.samplers.TPESampler(seed=seed, **options)
    if name == "multivariate-tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=int(s.get("n_startup_trials", 10)),
            n_ei_candidates=int(s.get("n_ei_candidates", 24)))
    if name == "grid":
        return optuna.samplers.GridSampler(grid, seed=seed)
    if name == "cmaes":
        sigma = float(s["sigma"]) if "sigma" in s else None
        return optuna.samplers.CmaEsSampler(seed=seed, sigma0=sigma)
    if name == "sobol":
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(
            seed=seed, population_size=int(s.get("population_size", 10)),
            crossover_prob=float(s.get("crossover_prob", 0.9)))
    return optuna.samplers.GPSampler(seed=seed,
                                     n_startup_trials=int(s.get("n_initial_points", 10)))


class OptunaSuggestion(Suggestion):

    def __init__(self, context: SearchContext) -> None:
        super().__init__(context)
        algorithm = context.experiment.spec.algorithm.algorithm_name
        self.uses_history = algorithm not in HISTORY_FREE
        self.parameters = self.space.parameters
        self.distributions = {p.name: p.distribution_for_optuna() for p in self.parameters}
        grid = {}
        if algorithm == "grid":
            grid = {p.name: [p.from_katib(v) for v in p.grid() or []] for p in self.parameters}
        self.sampler = _sampler(algorithm, context.settings, context.seed, grid)
        # nsga2: one study direction per objective; the others: the experiment's objective
        self.objectives = (pareto.parse_objectives(context.settings["objectives"])
                           if algorithm == "nsga2" else None)
        directions = [m for _, m in self.objectives] if self.objectives else [context.maximize]
        self.study = optuna.create_study(
            directions=["maximize" if m else "minimize" for m in directions],
            sampler=self.sampler)
        self.asked: dict[int, int] = {}  # trial index -> Optuna trial number
        self.told: set[int] = set()

    def _values(self, result: TrialResult | None) -> float | list[float] | None:
        """What the study is told for a result: its objective value, or one value per
        objective (None: failed or not finite)."""
        if result is None:
            return None
        if self.objectives is None:
            values = [result.value]
        else:
            values = [result.metrics.get(metric) for metric, _ in self.objectives]
        if any(v is None or not math.isfinite(v) for v in values):
            return None
        return values[0] if self.objectives is None else values

    def _tell(self, history: Sequence[TrialResult]) -> None:
        if not self.uses_history:  # results change nothing
            return
        for result in history:
            number = self.asked.get(result.index)
            if number is None or result.index in self.told:
                continue
            values = self._values(result)
            if values is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, values)
            self.told.add(result.index)

    def _assignments(self, trial: optuna.trial.BaseTrial) -> dict[str, str]:
        return {p.name: p.to_katib(trial.params[p.name]) for p in self.parameters}

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        self._tell(history)
        trial = self.study.ask(self.distributions)
        self.asked[index] = trial.number
        return self._assignments(trial)

    def duplicate(self, index: int, assignments: dict[str, str],
                  history: Sequence[TrialResult]) -> None:
        """Optuna's advice for repeats: tell the sampler the value the configuration already
        scored (so it learns and moves on), or FAIL while that is not known yet."""
        number = self.asked.pop(index)
        if not self.uses_history:
            return
        first = self.proposed[key(assignments)]
        known = self._values(next((r for r in history if r.index == first), None))
        if known is not None:
            self.study.tell(number, known)
        else:
            self.study.tell(number, state=TrialState.FAIL)

    def adopt(self, index: int, assignments: dict[str, str]) -> None:
        number = self.asked.pop(index, None)
        if number is not None and self.uses_history:
            self.study.tell(number, state=TrialState.FAIL)  # the draw it replaces
        self.study.enqueue_trial({p.name: p.from_katib(assignments[p.name])
                                  for p in self.parameters})
        self.asked[index] = self.study.ask(self.distributions).number


def _cmaes_space(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    if sum(p.parameter_type in ("int", "double") for p in spec.parameters or []) < 2:
        return [Problem("spec.parameters", "cmaes needs at least 2 int or double parameters")]
    return []


def _finite_grid(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    if not spec.parameters or not spec.max_trial_count:
        return []
    space = Space.of(spec)
    if any(p.count() is None for p in space.parameters):
        return [Problem("spec.parameters", "grid needs a finite space: give double parameters "
                        "a step")]
    total = space.size
    if total > ENUMERATE_LIMIT:
        return [Problem("spec.parameters", f"grid lists every combination: {total:.3g} is more "
                        f"than {ENUMERATE_LIMIT:,}; use random or tpe, or coarser steps")]
    if spec.max_trial_count > total:
        return [Problem("spec.maxTrialCount", f"grid has only {total:.0f} combinations")]
    return []


SEED = Setting("int", low=0, high=2**32 - 1)  # numpy seeds
_OPTUNA = "Optuna's {}, with Katib's `algorithmSettings` names"
ALGORITHMS = (
    Algorithm("random", _OPTUNA.format("RandomSampler"), {"random_state": SEED},
              OptunaSuggestion),
    Algorithm("tpe", _OPTUNA.format("TPESampler") + " (hyperopt's `gamma` fraction)", {
        "gamma": Setting("float", low=0, high=1, low_open=True, high_open=True),
        "prior_weight": Setting("float", low=0, low_open=True),
        "n_EI_candidates": Setting("int", low=1, high=10_000, default="24"), "random_state": SEED},
        OptunaSuggestion),
    Algorithm("grid", _OPTUNA.format("GridSampler") + "; double parameters need a step",
              {"random_state": SEED}, OptunaSuggestion, checks=(_finite_grid,)),
    Algorithm("multivariate-tpe", _OPTUNA.format("TPESampler(multivariate=True)"), {
        "n_startup_trials": Setting("int", low=0, default="10"),
        "n_ei_candidates": Setting("int", low=0, high=10_000, default="24"), "random_state": SEED},
        OptunaSuggestion),
    Algorithm("bayesianoptimization", _OPTUNA.format("GPSampler") + " (a Gaussian process with "
              "expected improvement; skopt's other estimators and acquisitions are ignored)", {
        "base_estimator": Setting("choice", choices=("GP", "RF", "ET", "GBRT"), honoured="GP"),
        "n_initial_points": Setting("int", low=0, default="10"),
        "acq_func": Setting("choice", choices=("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
                            honoured="EI"),
        "acq_optimizer": Setting("choice", choices=("auto", "sampling", "lbfgs"), honoured=None),
        "random_state": SEED}, OptunaSuggestion,
        ignored_note="the engine's bayesianoptimization is Optuna's GPSampler: a Gaussian "
        "process with expected improvement, optimised by its own multi-start search"),
    Algorithm("cmaes", _OPTUNA.format("CmaEsSampler"), {
        "random_state": SEED, "sigma": Setting("float", low=0, low_open=True),
        "restart_strategy": Setting("choice", choices=("ipop", "bipop", "none"),
                                    honoured="none")},
        OptunaSuggestion, checks=(_cmaes_space,),
        ignored_note="Optuna's CmaEsSampler (>= 4.4) has no restarts"),
    Algorithm("sobol", _OPTUNA.format("QMCSampler(sobol, scrambled)"), {}, OptunaSuggestion),
    Algorithm("nsga2", "Optuna's NSGAIISampler: Pareto search over `objectives` (non-dominated "
              "sorting, crowding distance, crossover and mutation of the population)", {
        "objectives": Setting("text", required=True, nasflow_only=True),
        "population_size": Setting("int", low=2, high=10_000, default="10"),
        "crossover_prob": Setting("float", low=0, high=1, default="0.9"),
        "random_state": SEED}, OptunaSuggestion, katib=False,
        checks=(pareto.check_objectives,)),
)
