"""The experiment's parent MLflow run: manifest, search-space size, leaderboard and plots.

Trial runs nest under it (the engine hands trials ``MLFLOW_PARENT_RUN_ID``). The leaderboard and
the two plots are rewritten as trials finish, at most every ``min_interval`` seconds and once at
the end, so a 1,000-trial search does not spend its time drawing.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.engine.state import TrialRecord
from trial_image.tracking import EXPERIMENT_KIND

PARAMETER_COUNT = "Parameter-Count"


class ExperimentTracking:
    def __init__(self, uri: str, name: str, run_id: str | None, manifest: str,
                 params: dict[str, Any], min_interval: float = 5.0) -> None:
        import mlflow

        self.mlflow = mlflow
        self.client = mlflow.MlflowClient(uri)
        self.min_interval = min_interval
        self.last_update = 0.0
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.set_experiment(name)
        self.client.set_experiment_tag(experiment.experiment_id, *next(iter(
            EXPERIMENT_KIND.items())))
        if run_id:
            self.run_id = run_id
            self.client.update_run(run_id, status="RUNNING")
        else:
            run = self.client.create_run(experiment.experiment_id, run_name=name, tags={
                "katib.experiment": name, "nasflow.role": "experiment"})
            self.run_id = run.info.run_id
            self.client.log_text(self.run_id, manifest, "experiment.yaml")
            self.client.log_batch(self.run_id, params=[
                mlflow.entities.Param(k, str(v)[:500]) for k, v in params.items()])
        self.experiment_id = experiment.experiment_id

    def update(self, trials: Sequence[TrialRecord], values: dict[int, float | None],
               maximize: bool, force: bool = False) -> None:
        if not force and time.monotonic() - self.last_update < self.min_interval:
            return
        self.last_update = time.monotonic()
        finished = [t for t in trials if t.done]
        board = sorted(
            ({"trial": t.name, "status": t.status, "objective": values.get(t.index),
              "parameter_count": _last_number(t.observations.get(PARAMETER_COUNT)),
              "assignments": t.assignments} for t in finished),
            key=lambda row: (row["objective"] is None,
                             -(row["objective"] or 0) if maximize else (row["objective"] or 0)))
        self.client.log_text(self.run_id, json.dumps(board, indent=2), "leaderboard.json")
        scored = [(t.index, values[t.index]) for t in sorted(finished, key=lambda t: t.finished)
                  if values.get(t.index) is not None]
        if scored:
            best = max(v for _, v in scored) if maximize else min(v for _, v in scored)
            self.client.log_metric(self.run_id, "best_objective", best, step=len(finished))
            self._plots(scored, board, maximize)

    def _plots(self, scored: list[tuple[int, float]], board: list[dict], maximize: bool) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        running, best = [], None
        for _, value in scored:
            best = value if best is None else (max if maximize else min)(best, value)
            running.append(best)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(range(1, len(scored) + 1), [v for _, v in scored], "o", alpha=0.4, label="trial")
        ax.step(range(1, len(running) + 1), running, where="post", label="best so far")
        ax.set_xlabel("finished trials")
        ax.set_ylabel("objective")
        ax.legend()
        self._log_figure(fig, "best_so_far.png")
        points = [(r["parameter_count"], r["objective"]) for r in board
                  if r["parameter_count"] is not None and r["objective"] is not None]
        if points:
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.scatter([p for p, _ in points], [v for _, v in points])
            ax.set_xscale("log")
            ax.set_xlabel("parameters")
            ax.set_ylabel("objective")
            self._log_figure(fig, "objective_vs_parameters.png")

    def _log_figure(self, fig: Any, name: str) -> None:
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
        plt.close(fig)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(buffer.getvalue())
            self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)

    def kill_trial_runs(self, trial_names: Sequence[str]) -> None:
        """End the MLflow runs of trials that were running when the engine died."""
        for name in trial_names:
            runs = self.client.search_runs([self.experiment_id],
                                           f"tags.`katib.trial` = '{name}' and "
                                           "attributes.status = 'RUNNING'")
            for run in runs:
                self.client.set_terminated(run.info.run_id, "KILLED")


def _last_number(values: Sequence[str] | None) -> float | None:
    for value in reversed(values or []):
        try:
            return float(value)
        except ValueError:
            continue
    return None
