"""Final training: from a search's best trials to one model worth shipping.

1. **Selection.** The ``top_k`` best trials of the search are trained again from scratch with the
   final schedule (more epochs, a cosine learning rate, light augmentation), ``seeds`` times each,
   on the training split. The winner has the best mean objective over its seeds, read from the
   runs' validation curves under the experiment's metric strategy. The test split is never read:
   these runs pass ``--skip-test`` and their data loader loads no test images.
2. **Final training.** The winner is trained once more, on training + validation, with the same
   schedule over as many epochs as its selection runs took to reach their best validation
   objective (the epoch early stopping restores; nothing is left to stop the final run on, and
   a schedule's last epochs can overfit a small set); then it is evaluated once on the test
   split, beside the current champion
   (``models:/<model>@champion``) on the very same split, so that promotion compares like with
   like. Its MLflow run has tag ``nasflow.role=final``.

3. **A check of the final run.** The final run has no validation split, so nothing of its own
   says it trained; its training curve is compared with its candidate's selection runs (same
   candidate, schedule and seeds; a bit more data) at their best epoch. A final run whose
   last training accuracy is more than :data:`MAX_SHORTFALL` below theirs (or whose training
   RMSE is more than :data:`MAX_RMSE_EXCESS` above theirs) failed to train (a stalled
   optimiser, not a model): it is tagged ``nasflow.role=final-rejected`` with the reason, never
   promoted, and final training tries another seed, then the runner-up,
   :data:`FINAL_ATTEMPTS` runs at most; then it fails with one line. The test split is not read
   for this decision.

4. **An ensemble** (:mod:`pipeline.finalize.ensemble`) of up to ``schedule.ensemble``
   finalists, chosen greedily on the selection runs' validation outputs, when it beats the
   winner alone there by a stated margin: the members' final models are trained and averaged
   into one model, which is then what is promoted (a latency or size ``budget`` can rule it
   out).

Why the longer runs' validation and not cross-validation: cross-validation would cost ``folds``×
the selection; the seeds already average out the variance of one training, and the validation
split is never used to fit. Why retrain from scratch: a search trial's 15 epochs rank candidates;
they do not train them to the end.
"""

from __future__ import annotations

import math
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from pipeline.finalize.candidates import Candidate, Search, from_katib
from pipeline.finalize.ensemble import choose
from pipeline.finalize.errors import FinalizeError, NoCandidates
from pipeline.finalize.plan import FINAL, FinalRun, Schedule, selection_runs
from pipeline.finalize.runners import ClusterRunner, Outcome, Runner
from pipeline.katib.objective import PICK, metric_strategy, numbers
from trial_image.contract import (
    VALIDATION_OUTPUTS,
    Task,
    fail_fast_http,
    retry,
    tags,
    task_of,
)

TIE_BREAK = "Validation-Loss"
MAX_SHORTFALL = 0.05  # training accuracy a final run may end below its selection runs
MAX_RMSE_EXCESS = 0.25  # relative: training RMSE a final run may end above its selection runs
FINAL_ATTEMPTS = 3  # the winner with seeds 0 and 1, then the runner-up
REJECTED = "final-rejected"  # the nasflow.role of a final run that failed the check

__all__ = ["FinalResult", "FinalizeError", "NoCandidates", "Schedule", "finalize",
           "finalize_on_katib"]


@dataclass
class FinalResult:
    experiment: str
    winner: str  # the search trial whose candidate won
    final_run: str  # its MLflow run id
    test_metric: str  # the task's measure: Test-Accuracy, Test-RMSE
    test_score: float
    champion_test_score: float | None  # the champion on the same test split, if any
    best_search_trial: str
    best_search_test_score: float | None
    selection: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # final runs that failed to train, why
    seconds: float = 0.0
    ensemble: dict[str, Any] | None = None  # the ensemble's choice; chosen: it is final_run

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Runs:
    """The MLflow runs trials logged, found by their tags."""

    def __init__(self, uri: str, experiment: str, retry_seconds: float) -> None:
        from mlflow import MlflowClient

        fail_fast_http()
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # stderr is ours
        self.client = MlflowClient(uri)
        self.retry_seconds = retry_seconds
        retry(lambda: self.client.search_experiments(max_results=1),
              f"connecting to MLflow at {uri}", retry_seconds)
        self.experiment_id: str | None = None
        self.name = experiment

    def finished(self, trial: str) -> Any | None:
        if self.experiment_id is None:  # the runs create it
            found = retry(lambda: self.client.get_experiment_by_name(self.name),
                          "reading the experiment", self.retry_seconds)
            if found is None:
                return None
            self.experiment_id = found.experiment_id
        runs = retry(lambda: self.client.search_runs(
            [self.experiment_id], f"tags.`katib.experiment` = '{self.name}' and "
            f"tags.`katib.trial` = '{trial}' and attributes.status = 'FINISHED'",
            order_by=["attributes.end_time DESC"], max_results=1),
            "reading a run", self.retry_seconds)
        return runs[0] if runs else None

    def reject(self, run_id: str, reason: str) -> None:
        """Take a final run out of promotion's reach (its role) and say why on it."""
        retry(lambda: self.client.set_tag(run_id, tags.ROLE, REJECTED), "tagging a run",
              self.retry_seconds)
        retry(lambda: self.client.set_tag(run_id, tags.FAILURE_REASON, reason[:5000]),
              "tagging a run", self.retry_seconds)

    def arrays(self, run_id: str, path: str) -> dict[str, Any] | None:
        """The ``.npz`` artifact at ``path`` of a run (None: it has none)."""
        listed = retry(lambda: self.client.list_artifacts(run_id, path.rpartition("/")[0]),
                       "listing a run's artifacts", self.retry_seconds)
        if path not in {item.path for item in listed}:
            return None
        with tempfile.TemporaryDirectory() as tmp:
            local = retry(lambda: self.client.download_artifacts(run_id, path, tmp),
                          f"reading {path}", self.retry_seconds)
            with np.load(local) as content:
                return {name: content[name] for name in content.files}

    def history(self, run_id: str, metric: str) -> list[str]:
        points = retry(lambda: self.client.get_metric_history(run_id, metric),
                       "reading a metric's history", self.retry_seconds)
        return [repr(p.value) for p in sorted(points, key=lambda p: p.step)]


def _execute(runner: Runner, runs: list[FinalRun], tracked: _Runs, log: Callable[[str], None]
             ) -> list[tuple[Outcome, Any]]:
    """Each run's outcome and finished MLflow run, in order. A run that finished before (same
    name: same inputs) is not run again: final training repeated or resumed after a kill
    redoes only what is missing."""
    found = {run.name: tracked.finished(run.name) for run in runs}
    todo = [run for run in runs if found[run.name] is None]
    if len(todo) < len(runs):
        log(f"{len(runs) - len(todo)} run(s) finished before with the same inputs: not run again")
    outcomes = runner.run(todo) if todo else {}
    return [(outcomes.get(run.name, Outcome(True, "")),
             found[run.name] or tracked.finished(run.name)) for run in runs]


def finalize(search: Search, runner: Runner, tracking_uri: str, model: str,
             schedule: Schedule, log: Callable[[str], None] = lambda line: None,
             retry_seconds: float = 20.0, budget: Any = None) -> FinalResult:
    """``budget``: promotion gates of latency and size (``Gates``) an ensemble must meet."""
    started = time.monotonic()
    if search.experiment.spec.algorithm.algorithm_name == "darts":
        raise NoCandidates(f"experiment {search.name!r} is a DARTS search, whose trial already "
                           "trains the derived network from scratch (DARTS' own final "
                           "training); promote it with --metric Test-Accuracy")
    if not search.candidates:
        raise NoCandidates(f"experiment {search.name!r} has no trial with an objective value")
    objective = search.experiment.spec.objective
    metric = objective.objective_metric_name
    strategy = metric_strategy(objective, metric)
    pick = PICK[strategy]
    sign = 1.0 if search.maximize else -1.0

    selection = selection_runs(search.name, search.candidates, schedule, model)
    log(f"final training of {search.name}: {len({r.candidate.trial for r in selection})} "
        f"candidate(s) × {schedule.seeds} seed(s), {schedule.epochs} epochs, "
        f"{schedule.lr_schedule} learning rate, {schedule.augment} augmentation")
    runs = _Runs(tracking_uri, search.name, retry_seconds)
    table, scores, losses, trained, selected, best_epochs = [], {}, {}, {}, {}, {}
    task: Task | None = None
    for run, (outcome, logged) in zip(selection, _execute(runner, selection, runs, log),
                                      strict=True):
        values = numbers(runs.history(logged.info.run_id, metric)) if logged else []
        value = pick(values) if outcome.succeeded and values else None
        table.append({"trial": run.candidate.trial, "seed": run.seed, "run": run.name,
                      metric: value, "error": None if value is not None else
                      outcome.message or f"no {metric} in its MLflow run"})
        if value is not None:
            scores.setdefault(run.candidate.trial, []).append(value)
            selected.setdefault(run.candidate.trial, []).append(logged.info.run_id)
            loss = numbers(runs.history(logged.info.run_id, TIE_BREAK))
            losses.setdefault(run.candidate.trial, []).append(min(loss, default=math.inf))
            epoch = len(values) if strategy == "latest" else _best_epoch(values, loss, value)
            best_epochs.setdefault(run.candidate.trial, []).append(epoch)
            task = task_of(logged.data.tags.get(tags.TASK))
            curve = numbers(runs.history(logged.info.run_id, f"Training-{task.measure}"))
            trained.setdefault(run.candidate.trial, []).extend(curve[:epoch][-1:])
    if not scores:
        raise FinalizeError("every selection run failed: " + "; ".join(
            f"{row['run']}: {row['error']}" for row in table))
    # 288 validation images tie often: the lower validation loss breaks a tie
    ranked = sorted((c for c in search.candidates if c.trial in scores),
                    key=lambda c: (sign * statistics.fmean(scores[c.trial]),
                                   -statistics.fmean(losses[c.trial])), reverse=True)
    winner = ranked[0]

    def final_run(candidate: Candidate, seed: int = 0) -> FinalRun:
        """A final run trains as many epochs as its candidate's selection runs took to reach
        their best validation objective (their mean, rounded up): there is no validation
        split left to stop it, and the schedule's last epochs may overfit a small set."""
        epochs = math.ceil(statistics.fmean(best_epochs[candidate.trial]))
        return FinalRun(search.name, candidate, FINAL, seed, replace(schedule, epochs=epochs),
                        model)

    log(f"winner: {winner.trial} ({metric} {statistics.fmean(scores[winner.trial]):.4f} over "
        f"{len(scores[winner.trial])} seed(s)); training it on training + validation for "
        f"{final_run(winner).schedule.epochs} epochs (where its selection runs were best)")

    rejected = []
    attempts = [(c, seed) for c in ranked for seed in (0, 1)][:FINAL_ATTEMPTS]
    for candidate, seed in attempts:
        final = final_run(candidate, seed)
        ((outcome, logged),) = _execute(runner, [final], runs, log)
        if not outcome.succeeded or logged is None:
            raise FinalizeError(f"the final run {final.name} failed: "
                                f"{outcome.message or 'no run'}")
        task = task_of(logged.data.tags.get(tags.TASK))
        problem = _shortfall(numbers(runs.history(logged.info.run_id,
                                                  f"Training-{task.measure}")),
                             trained.get(candidate.trial, []), task)
        if problem is None:
            break
        runs.reject(logged.info.run_id, problem)
        rejected.append(f"{final.name} ({candidate.trial}, seed {seed}): {problem}")
        log(f"final run {final.name} of {candidate.trial} (seed {seed}) {problem}: a failed "
            "training, not a model; it will not be promoted")
    else:
        raise FinalizeError(f"no final run trained as its selection runs did ({len(rejected)} "
                            f"tried): " + "; ".join(rejected))
    ensemble = None
    if schedule.ensemble > 1 and len(selected) > 1:
        finalists = {c.trial: c for c in ranked if c.trial in selected}
        ensemble, logged = _ensemble(finalists, selected, trained, candidate, logged, task,
                                     runner, runs, final_run, schedule.ensemble, budget, log)
    best = runs.finished(search.candidates[0].trial)
    return FinalResult(
        experiment=search.name, winner=candidate.trial, final_run=logged.info.run_id,
        test_metric=task.test_metric, test_score=logged.data.metrics[task.test_metric],
        champion_test_score=logged.data.metrics.get(task.champion_metric),
        best_search_trial=search.candidates[0].trial,
        best_search_test_score=best.data.metrics.get(task.test_metric) if best else None,
        selection=table, rejected=rejected, seconds=round(time.monotonic() - started, 1),
        ensemble=ensemble)


def _ensemble(finalists: dict[str, Candidate], selected: dict[str, list[str]],
              trained: dict[str, list[float]], winner: Candidate, single: Any, task: Task,
              runner: Runner, runs: _Runs, final_run: Callable[[Candidate], FinalRun],
              size: int, budget: Any, log: Callable[[str], None]
              ) -> tuple[dict[str, Any], Any]:
    """The ensemble's choice of at most ``size`` finalists and, when chosen, its run (else the
    winner's final run); ``trained``: where each finalist's selection runs were at their best
    epoch, which its member's final run is checked against as the winner's was."""
    outputs, truth = {}, None
    for trial, run_ids in selected.items():
        arrays = [runs.arrays(run_id, VALIDATION_OUTPUTS) for run_id in run_ids]
        if any(a is None for a in arrays) or (truth is not None and not np.array_equal(
                arrays[0]["truth"], truth)):
            log(f"finalist {trial}: no validation outputs to ensemble (or other examples)")
            continue
        truth = arrays[0]["truth"]
        outputs[trial] = np.mean([a["outputs"] for a in arrays], axis=0)
    if winner.trial not in outputs:
        return {"chosen": False, "reason": "the winner has no validation outputs"}, single
    choice = choose(outputs, truth, task, winner.trial, size)
    summary = {"chosen": False, "reason": choice.describe(), "weights": choice.weights,
               "validation": {"winner": list(choice.single), "ensemble": list(choice.mixed)}}
    log(choice.describe())
    if not choice.proposed:
        return summary, single
    members = [final_run(finalists[t]) for t in choice.counts if t != winner.trial]
    finals = {winner.trial: single}
    for run, (outcome, logged) in zip(members, _execute(runner, members, runs, log),
                                      strict=True):
        problem = (outcome.message or "no run") if not outcome.succeeded or logged is None \
            else None
        if problem is None:
            problem = _shortfall(numbers(runs.history(logged.info.run_id,
                                                      f"Training-{task.measure}")),
                                 trained.get(run.candidate.trial, []), task)
        if problem is not None:
            summary["reason"] = f"member {run.candidate.trial}'s final run: {problem}"
            log(f"no ensemble: {summary['reason']}; the winner alone")
            return summary, single
        finals[run.candidate.trial] = logged
    combined = replace(final_run(winner), members=tuple((finals[t].info.run_id, n)
                                                         for t, n in choice.counts.items()))
    ((outcome, logged),) = _execute(runner, [combined], runs, log)
    if not outcome.succeeded or logged is None:
        raise FinalizeError(f"the ensemble's run {combined.name} failed: "
                            f"{outcome.message or 'no run'}")
    metrics, alone = logged.data.metrics, single.data.metrics
    summary.update(run=logged.info.run_id, members={t: r.info.run_id for t, r in finals.items()},
                   size_ratio=metrics["Parameter-Count"] / alone["Parameter-Count"],
                   latency_ratio=metrics["Inference-Latency-Ms"] / alone[
                       "Inference-Latency-Ms"], winner_test_score=alone[task.test_metric])
    refused = budget.failures(metrics) if budget is not None else []
    if refused:
        summary["reason"] = f"the ensemble exceeds the budget: {'; '.join(refused)}"
        runs.reject(logged.info.run_id, summary["reason"])
        log(f"{summary['reason']}; the winner alone")
        return summary, single
    summary["chosen"] = True
    log(f"the ensemble is the final model: {summary['size_ratio']:.1f}× the winner's "
        f"parameters, {summary['latency_ratio']:.1f}× its latency")
    return summary, logged


def _best_epoch(values: list[float], losses: list[float], best: float) -> int:
    """The epoch (from 1) at which a selection run's validation objective was ``best``, the
    one early stopping restores; of tied epochs (288 images tie often) the one with the lower
    validation loss."""
    tied = [i for i, value in enumerate(values) if value == best]
    return 1 + min(tied, key=lambda i: losses[i] if i < len(losses) else math.inf)


def _shortfall(final_curve: list[float], selection_ends: list[float], task: Task
               ) -> str | None:
    """Why a final run's training curve says it did not train (None: it did, or there is
    nothing to compare)."""
    if not final_curve or not selection_ends:
        return None
    reached, expected = final_curve[-1], statistics.fmean(selection_ends)
    if (reached >= expected - MAX_SHORTFALL) if task.maximize \
            else (reached <= expected * (1 + MAX_RMSE_EXCESS)):
        return None
    return (f"ended at Training-{task.measure} {reached:.4f} where its selection run(s) reached "
            f"{expected:.4f}")


def finalize_on_katib(client: Any, experiment: str, tracking_uri: str, model: str,
                      schedule: Schedule, timeout: float, image: str | None,
                      log: Callable[[str], None], retry_seconds: float, budget: Any = None
                      ) -> FinalResult:
    """Final training of a Katib experiment: its trials from Katib, its runs as Jobs (as many
    at once as its ``parallelTrialCount``), each waited for up to ``timeout`` s."""
    search = from_katib(client, experiment)
    spec = search.experiment.spec
    runner = ClusterRunner(client, search.experiment, parallel=spec.parallel_trial_count or 3,
                           timeout=timeout, image=image, log=log)
    return finalize(search, runner, tracking_uri, model, schedule, log, retry_seconds, budget)
