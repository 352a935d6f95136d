"""``nasflow submit``, ``status``, ``trials`` and ``delete``: Katib experiments on a cluster.
A cluster failure exits 1 with one line saying what to do."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    SECONDS,
    Progress,
    UsageError,
    cluster_flags,
    custom_algorithms_flag,
    experiment_name,
    for_cluster,
    katib_client,
    load_experiment,
    mlflow_retry_flag,
    print_json,
    tracking_uri,
)
from pipeline.cli.finalize import schedule_flags
from pipeline.cli.promote import promotion_flags


def _progress(experiment: Any) -> dict[str, Any]:
    """Katib's status in the shape of the engine's progress callback."""
    from pipeline.promotion.optimal_trial import NoOptimalTrial, from_katib

    status = experiment.status
    done = sum(getattr(status, f) or 0 for f in (
        "trials_succeeded", "trials_failed", "trials_early_stopped", "trials_killed",
        "trial_metrics_unavailable"))
    try:
        best = from_katib(experiment).value
    except NoOptimalTrial:
        best = None
    started = status.start_time
    elapsed = (datetime.now(UTC) - started).total_seconds() if started else 0.0
    total = experiment.spec.max_trial_count or 0
    return {"done": done, "running": status.trials_running or 0, "total": total,
            "failed": (status.trials_failed or 0) + (status.trial_metrics_unavailable or 0),
            "best": best, "elapsed": elapsed,
            "eta": elapsed / done * (total - done) if done and total else None}


def _follow(experiment: Any, progress: Progress) -> None:
    if experiment.status is not None:
        progress(_progress(experiment))


def _describe(experiment: Any) -> None:
    from pipeline.cluster.client import condition, current_condition

    status = experiment.status
    last = current_condition(experiment)
    print(f"experiment {experiment.metadata.name} (namespace {experiment.metadata.namespace}): "
          f"{condition(experiment)}" + (f" ({last.reason}: {last.message})" if last else ""))
    if status is None:
        return
    print(f"trials: {status.trials or 0} ({status.trials_succeeded or 0} succeeded, "
          f"{status.trials_failed or 0} failed, {status.trials_early_stopped or 0} early-stopped, "
          f"{status.trial_metrics_unavailable or 0} without metrics, "
          f"{status.trials_killed or 0} killed, {status.trials_running or 0} running, "
          f"{status.trials_pending or 0} pending) of max {experiment.spec.max_trial_count}")
    optimal = status.current_optimal_trial
    if optimal and optimal.best_trial_name:
        print(f"optimal trial: {optimal.best_trial_name}")
        for m in (optimal.observation.metrics if optimal.observation else None) or []:
            print(f"  {m.name}: max {m.max}, min {m.min}, latest {m.latest}")
        for a in optimal.parameter_assignments or []:
            print(f"  {a.name} = {a.value}")
    for c in status.conditions or []:
        print(f"  {c.type:<11} {c.status:<6} {c.reason or '':<34} {c.last_transition_time}")


def cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.cluster.client import condition
    from pipeline.cluster.render import RenderError, render
    from pipeline.katib.status import ExperimentCondition

    if args.no_finalize and not args.promote:
        raise UsageError("--no-finalize says what --promote promotes: add --promote")
    manifest = load_experiment(args.file, args.name)
    client = katib_client(args)
    for_cluster(manifest, client, args.allow_custom_algorithms)
    try:
        name = f"{manifest.name}-{args.name_suffix}" if args.name_suffix else None
        body = render(manifest.raw, name=name, image=args.image)
    except RenderError as exc:
        raise UsageError(str(exc)) from None
    name = body["metadata"]["name"]
    decisions = _decisions(args, name) if args.promote else None
    client.create_experiment(body)
    print(f"experiment {name} created in namespace {client.namespace}", file=sys.stderr)
    if not (args.wait or args.promote):
        return 0
    progress = Progress()
    experiment = client.wait(name, args.timeout, lambda e: _follow(e, progress))
    if args.output == "text":  # --output json: stdout is the JSON alone
        _describe(experiment)
    if condition(experiment) != ExperimentCondition.SUCCEEDED:
        return 1
    if decisions is not None:
        _promote(args, client, name, decisions)
    return 0


def _decisions(args: argparse.Namespace, name: str) -> Any:
    """What ``--promote`` decides with, checked against the registry before the submission."""
    from pipeline.cli.finalize import schedule_of
    from pipeline.cli.promote import decisions_of
    from pipeline.lifecycle import preflight

    decisions = decisions_of(args, args.model or name,
                             None if args.no_finalize else schedule_of(args))
    preflight(decisions, tracking_uri(args), args.mlflow_retry_seconds)
    return decisions


def _promote(args: argparse.Namespace, client: Any, name: str, decisions: Any) -> None:
    """The story of :mod:`pipeline.lifecycle` on the cluster, as ``nasflow pipeline`` tells it:
    final training as Jobs (unless --no-finalize), then promotion."""
    from pipeline.cli.finalize import log, print_result
    from pipeline.cli.promote import decision_line
    from pipeline.finalize.errors import FinalizeError
    from pipeline.lifecycle import KatibPlace, tell

    uri = tracking_uri(args)
    place = KatibPlace(client, name, uri, args.timeout, args.image, log,
                       args.mlflow_retry_seconds)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # MLflow prints its own progress
            outcome = tell(place, decisions, uri, log, args.mlflow_retry_seconds)
    except FinalizeError as exc:
        raise type(exc)(f"{exc}; no final model was trained (to promote the search's optimal "
                        f"trial itself: nasflow promote {name} --stage search)") from None
    if args.output == "json":
        print_json(outcome.to_dict())
        return
    if outcome.final:
        print_result(outcome.final, "text")
    print(decision_line(outcome.decision, outcome.promoted,
                        args.metric or outcome.promoted.metric))


def cmd_status(args: argparse.Namespace) -> int:
    client = katib_client(args)
    if args.watch:
        progress = Progress()
        experiment = client.wait(args.experiment, args.timeout, lambda e: _follow(e, progress))
        if sys.stderr.isatty():
            sys.stderr.write("\n")
    else:
        experiment = client.get_experiment(args.experiment)
    uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:  # only a tracking server the user named: never a new ./mlflow.db
        _end_orphaned_runs(client, args.experiment, uri, args.mlflow_retry_seconds)
    if args.output == "json":
        from pipeline.katib.redaction import redact

        print_json(redact(experiment.to_dict()))
    else:
        _describe(experiment)
    return 0


def _end_orphaned_runs(client: Any, experiment: str, uri: str, retry_seconds: float) -> None:
    from pipeline.cluster.reconcile import end_orphaned_runs
    from trial_image.contract import TrackingError

    try:
        ended = end_orphaned_runs(experiment, client.namespace, client.list_trials(experiment),
                                  uri, retry_seconds)
    except TrackingError as exc:
        print(f"nasflow status: MLflow: {exc} (runs of ended trials not checked)",
              file=sys.stderr)
        return
    if ended:
        print(f"ended {len(ended)} MLflow run(s) left running by trials Katib ended: "
              + ", ".join(ended), file=sys.stderr)


def cmd_trials(args: argparse.Namespace) -> int:
    from pipeline.cluster.client import condition
    from pipeline.katib.objective import metric_strategy

    client = katib_client(args)
    experiment = client.get_experiment(args.experiment)
    objective = experiment.spec.objective.objective_metric_name
    strategy = metric_strategy(experiment.spec.objective, objective)
    trials = client.list_trials(args.experiment)
    rows = []
    for t in trials:
        metrics = {m.name: m for m in (t.status and t.status.observation
                                       and t.status.observation.metrics) or []}
        metric = metrics.get(objective)
        rows.append({"name": t.metadata.name, "status": condition(t),
                     objective: None if metric is None else getattr(metric, strategy),
                     "parameters": {a.name: a.value for a in t.spec.parameter_assignments or []}})
    if args.output == "json":
        print_json(rows)
        return 0
    print(f"{'TRIAL':<34} {'STATUS':<19} {objective:<22} PARAMETERS")
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
        print(f"{r['name']:<34} {r['status']:<19} {r[objective] or '-':<22} {params[:120]}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = katib_client(args)
    client.delete_experiment(args.experiment)
    print(f"experiment {args.experiment} deleted from namespace {client.namespace} "
          "(its trials and suggestion go with it)", file=sys.stderr)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit an Experiment to Katib",
                       description="Validate an Experiment, refuse local-only algorithms, and "
                       "create it on the cluster.")
    p.add_argument("file", type=Path)
    p.add_argument("--name", help="which Experiment of a multi-document file")
    p.add_argument("--name-suffix", help="submit as <name>-<suffix> (Katib names are unique)")
    p.add_argument("--image", help="trial image for the primary container")
    p.add_argument("--wait", action="store_true", help="follow it until it ends")
    p.add_argument("--timeout", type=SECONDS, default=6 * 3600, help="seconds to wait")
    p.add_argument("--promote", action="store_true",
                   help="wait, train the best trials to a final model as Jobs, promote it (as "
                   "`nasflow pipeline` does)")
    p.add_argument("--no-finalize", action="store_true",
                   help="with --promote: promote the search's optimal trial itself")
    p.add_argument("--output", choices=("text", "json"), default="text")
    custom_algorithms_flag(p)
    cluster_flags(p)
    promotion_flags(p)
    schedule_flags(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="conditions, trial counts and optimal trial",
                       description="Conditions, trial counts and the optimal trial. With a "
                       "tracking server (--tracking-uri or $MLFLOW_TRACKING_URI) it also ends "
                       "MLflow runs left RUNNING by trials Katib killed or failed.")
    p.add_argument("experiment", type=experiment_name)
    p.add_argument("--watch", action="store_true", help="progress until it ends")
    p.add_argument("--timeout", type=SECONDS, default=6 * 3600)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI; none: not "
                   "checked)")
    mlflow_retry_flag(p)
    cluster_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("trials", help="the trials of an experiment on the cluster")
    p.add_argument("experiment", type=experiment_name)
    p.add_argument("--output", choices=("text", "json"), default="text")
    cluster_flags(p)
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("delete", help="delete an experiment (and its trials) from the cluster")
    p.add_argument("experiment", type=experiment_name)
    cluster_flags(p)
    p.set_defaults(func=cmd_delete)
