"""The experiment's parent MLflow run: manifest, search-space size, leaderboard and plots.

Trial runs nest under it (the engine hands trials ``MLFLOW_PARENT_RUN_ID``). The leaderboard and
the two plots are rewritten as trials finish, at most every ``min_interval`` seconds and once at
the end, so a 1,000-trial search does not spend its time drawing.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from pipeline.engine.state import TrialRecord
from pipeline.katib import search_space
from pipeline.katib.manifest import Manifest
from pipeline.katib.redaction import redact
from pipeline.katib.search_space import Space
from trial_image.contract import TrackingError, open_experiment, retry, tags

PARAMETER_COUNT = "Parameter-Count"


def open_tracking(uri: str, manifest: Manifest, run_id: str | None, seed: int,
                  retry_seconds: float) -> ExperimentTracking:
    """The experiment's parent run (``run_id``: reopened on resume), with the manifest and the
    search's size, algorithm, objective, budget and seed as parameters."""
    spec = manifest.experiment.spec
    algorithm = spec.algorithm.algorithm_name
    size, how = search_space.size(manifest.experiment)
    params = {"algorithm": algorithm, "search_space_size": size, "search_space": how,
              "objective": f"{spec.objective.type} {spec.objective.objective_metric_name}",
              "max_trial_count": spec.max_trial_count,
              "parallel_trial_count": spec.parallel_trial_count or 3, "seed": seed}
    return ExperimentTracking(uri, manifest.name, run_id,
                              yaml.safe_dump(redact(manifest.raw), sort_keys=False), params,
                              retry_seconds, None if algorithm == "darts" else Space.of(spec))


class ExperimentTracking:
    """Opening it waits for an unreachable server up to ``retry_seconds``, then fails with one
    line (TrackingError, before any trial starts). Afterwards a failing server never stops the
    search: the leaderboard and plots are skipped (trials log their own runs, with their own
    retries) and written again once it answers; the final update waits ``retry_seconds``."""

    def __init__(self, uri: str, name: str, run_id: str | None, manifest: str,
                 params: dict[str, Any], retry_seconds: float, space: Space | None,
                 min_interval: float = 5.0) -> None:
        import mlflow

        self.space = space  # None: no importances (a DARTS search is one trial)
        self.mlflow = mlflow
        self.uri = uri
        self.retry_seconds = retry_seconds
        self.min_interval = min_interval
        self.last_update = 0.0
        self.warned = False
        self.client, experiment = open_experiment(uri, name, retry_seconds)
        self.experiment_id = experiment.experiment_id
        if run_id:
            self.run_id = run_id
            self._retry(lambda: self.client.update_run(run_id, status="RUNNING"),
                        "reopening the experiment's run")
            return
        run = self._retry(lambda: self.client.create_run(
            self.experiment_id, run_name=name,
            tags={tags.EXPERIMENT: name, tags.ROLE: "experiment"}),
            "creating the experiment's run")
        self.run_id = run.info.run_id
        self._retry(lambda: self.client.log_text(self.run_id, manifest, "experiment.yaml"),
                    "logging the manifest")
        self._retry(lambda: self.client.log_batch(self.run_id, params=[
            mlflow.entities.Param(k, str(v)[:500]) for k, v in params.items()]),
            "logging the experiment's parameters")

    def _retry(self, action: Any, what: str) -> Any:
        return retry(action, what, self.retry_seconds)

    def update(self, trials: Sequence[TrialRecord], values: dict[int, float | None],
               maximize: bool, front: dict[str, Any] | None = None, force: bool = False
               ) -> None:
        """The leaderboard and plots, at most every ``min_interval`` s (always with ``force``);
        best effort: a failure is said once on stderr and the search goes on."""
        if not force and time.monotonic() - self.last_update < self.min_interval:
            return
        self.last_update = time.monotonic()
        try:
            self._update(trials, values, maximize, front)
        except Exception as exc:  # noqa: BLE001 - the search must not die for its leaderboard
            if not self.warned:
                first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else \
                    type(exc).__name__
                print(f"nasflow run: MLflow at {self.uri} failed ({first}); the experiment's "
                      "leaderboard waits for it, trials keep logging their own runs",
                      file=sys.stderr)
                self.warned = True

    def finish(self, trials: Sequence[TrialRecord], values: dict[int, float | None],
               maximize: bool, status: str, front: dict[str, Any] | None = None) -> None:
        """The final leaderboard and the run's end, retried up to ``retry_seconds``; if MLflow
        stays away, say so and leave the search's result as it is."""
        try:
            self._retry(lambda: self._update(trials, values, maximize, front),
                        "the final leaderboard")
            self._retry(lambda: self._importances(trials, values, maximize), "the importances")
            self._retry(lambda: self.client.set_terminated(self.run_id, status),
                        "ending the experiment's run")
        except TrackingError as exc:
            print(f"nasflow run: {exc}; the experiment's MLflow run stays incomplete (trials "
                  "have their own runs)", file=sys.stderr)

    def _update(self, trials: Sequence[TrialRecord], values: dict[int, float | None],
                maximize: bool, front: dict[str, Any] | None) -> None:
        if front is not None and front["trials"]:  # a multi-objective search
            from pipeline.engine.pareto_front import front_figure

            self.client.log_text(self.run_id, json.dumps(front, indent=2), "pareto_front.json")
            self._log_figure(front_figure(front), "pareto_front.png")
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

    def _importances(self, trials: Sequence[TrialRecord], values: dict[int, float | None],
                     maximize: bool) -> None:
        """Which search decisions mattered (fANOVA over the finished trials): importance.json,
        importance.png and one ``importance.<decision>`` metric each."""
        from pipeline.engine.importance import importance_figure, importances

        if self.space is None:
            return
        scored = [(t.assignments, values[t.index]) for t in trials
                  if t.done and values.get(t.index) is not None]
        found = importances(self.space, scored, maximize)
        if not found:
            return
        self.client.log_text(self.run_id, json.dumps(found, indent=2), "importance.json")
        self._log_figure(importance_figure(found, f"which search decisions mattered (fANOVA "
                                                  f"over {len(scored)} finished trials)"),
                         "importance.png")

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

    def kill_trial_runs(self, trial_names: Sequence[str], status: str = "KILLED") -> None:
        """End the MLflow runs of trials that were running when the engine died, or that a
        trial left RUNNING when it ended (a worker killed before it could end its run)."""
        for name in trial_names:
            runs = self._retry(lambda n=name: self.client.search_runs(
                [self.experiment_id], f"tags.`katib.trial` = '{n}' and "
                "attributes.status = 'RUNNING'"), "finding interrupted trials' runs")
            for run in runs:
                self._retry(lambda r=run: self.client.set_terminated(r.info.run_id, status),
                            "ending an interrupted trial's run")


def _last_number(values: Sequence[str] | None) -> float | None:
    for value in reversed(values or []):
        try:
            return float(value)
        except ValueError:
            continue
    return None
