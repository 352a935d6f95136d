"""Which search decisions mattered: fANOVA importances over the finished trials.

Optuna's ``FanovaImportanceEvaluator`` (a random forest and functional ANOVA, Hutter et al. 2014)
on the trials' objective values. Hyperparameters are taken as they are; an ENAS architecture is
read as its decisions: each layer's operation and each skip connection. Shares sum to 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.katib import search_space
from pipeline.katib.search_space import Space

MIN_TRIALS = 4


def _enas_decisions(space: Space, assignments: dict[str, str]) -> dict[str, str]:
    """An ENAS architecture as named categorical decisions."""
    operations = space.operations
    out = {}
    for layer, row in enumerate(search_space.enas_architecture(assignments), start=1):
        op = operations[row[0]]
        out[f"layer {layer} operation"] = (
            f"{op['opt_type']}({', '.join(f'{k}={v}' for k, v in op['opt_params'].items())})")
        for source, bit in enumerate(row[1:]):
            out[f"layer {layer} input from {source or 'image'}"] = str(bit)
    return out


def _trials(space: Space, scored: Sequence[tuple[dict[str, str], float]]) -> list[Any]:
    """The scored configurations as Optuna trials: hyperparameters with their own
    distributions, ENAS decisions as categoricals (those that ever varied)."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    if space.nas is None:
        distributions = {p.name: p.distribution_for_optuna() for p in space.parameters}
        rows = [({p.name: p.from_katib(a[p.name]) for p in space.parameters}, value)
                for a, value in scored]
    else:
        rows = [(_enas_decisions(space, a), value) for a, value in scored]
        choices: dict[str, set[str]] = {}
        for row, _ in rows:
            for name, choice in row.items():
                choices.setdefault(name, set()).add(choice)
        distributions = {name: CategoricalDistribution(sorted(values))
                         for name, values in choices.items() if len(values) > 1}
    return [optuna.trial.create_trial(params={n: row[n] for n in distributions},
                                      distributions=distributions, value=value)
            for row, value in rows]


def importances(space: Space, scored: Sequence[tuple[dict[str, str], float]], maximize: bool
                ) -> dict[str, float]:
    """Decision -> share of the objective's variance it explains (largest first); empty when
    there are too few trials or no variance to explain."""
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if len(scored) < MIN_TRIALS or len({value for _, value in scored}) < 2:
        return {}
    trials = _trials(space, scored)
    if not trials[0].distributions:
        return {}
    study = optuna.create_study(direction="maximize" if maximize else "minimize")
    study.add_trials(trials)
    try:
        found = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=0))
    except (RuntimeError, ValueError):  # e.g. a forest without variance
        return {}
    return {name: float(share) for name, share in sorted(found.items(), key=lambda i: -i[1])}


def importance_figure(found: dict[str, float], title: str) -> Any:
    from matplotlib.figure import Figure

    names = list(found)[:15][::-1]
    figure = Figure(figsize=(7, 0.5 + 0.35 * len(names)), layout="constrained")
    axis = figure.subplots()
    axis.barh(names, [found[n] for n in names])
    axis.set_xlabel("share of the objective's variance (fANOVA)")
    axis.set_title(title)
    return figure
