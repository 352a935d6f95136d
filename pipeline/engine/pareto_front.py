"""The Pareto front of a multi-objective search (an algorithm with ``objectives``): what the
status, the summary and the parent MLflow run show of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.engine.state import TrialRecord
from pipeline.engine.status import Objective
from pipeline.katib.status import SCORED
from pipeline.suggestion import pareto


def pareto_front(trials: Sequence[TrialRecord], scoring: Objective,
                 objectives: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """Every scored trial's objective values and the non-dominated ones among them (the front,
    best first by the first objective)."""
    points, rows = [], []
    for t in trials:
        if t.status not in SCORED:
            continue
        values = {m: scoring.value(t, m) for m, _ in objectives}
        point = pareto.scores(values, objectives)
        if point is not None:
            points.append(point)
            rows.append({"trialName": t.name, "values": values,
                         "parameterAssignments": [{"name": k, "value": v}
                                                  for k, v in t.assignments.items()]})
    front = sorted((rows[i] for i in pareto.front(points)),
                   key=lambda r: [-p for p in pareto.scores(r["values"], objectives)])
    return {"objectives": [f"{m}:{'max' if up else 'min'}" for m, up in objectives],
            "trials": rows, "front": front}


def front_figure(view: dict[str, Any]) -> Any:
    """Every trial on the first two objectives, the front highlighted and joined."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    (y_metric, _), (x_metric, x_up) = [o.rsplit(":", 1) for o in view["objectives"][:2]]
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.scatter([r["values"][x_metric] for r in view["trials"]],
               [r["values"][y_metric] for r in view["trials"]], alpha=0.4, label="trial")
    front = sorted(view["front"], key=lambda r: r["values"][x_metric])
    ax.plot([r["values"][x_metric] for r in front], [r["values"][y_metric] for r in front],
            "o-", color="C3", label=f"Pareto front ({len(front)})")
    if x_up == "min" and all(r["values"][x_metric] > 0 for r in view["trials"]):
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels would overlap
    ax.set_xlabel(x_metric)
    ax.set_ylabel(y_metric)
    ax.legend()
    return fig
