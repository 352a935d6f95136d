"""The cluster and registry commands of ``nasflow``: submit, status, trials, delete, promote,
pipeline. Exit codes as in :mod:`pipeline.cli`; a cluster or registry failure exits 1 with one
line saying what to do."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pipeline.cli import Progress, UsageError, load_experiment, mlflow_retry_flag

T = TypeVar("T")


def _client(args: argparse.Namespace):
    from pipeline.cluster.client import KatibClient

    return KatibClient(namespace=args.namespace, kubeconfig=args.kubeconfig,
                       context=args.context)


def _tracking_uri(args: argparse.Namespace) -> str:
    from trial_image.tracking import default_tracking_uri

    return args.tracking_uri or default_tracking_uri()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _for_cluster(manifest: Any) -> None:
    from pipeline.validation import cluster_support

    unsupported = cluster_support(manifest.experiment)
    if unsupported:
        raise UsageError(f"{manifest.source}: cannot run on Katib: " + "; ".join(unsupported)
                         + " (run it locally with `nasflow run`)")


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
    from pipeline.promotion.optimal_trial import from_katib

    manifest = load_experiment(args.file, args.name)
    _for_cluster(manifest)
    client = _client(args)
    try:
        name = f"{manifest.name}-{args.name_suffix}" if args.name_suffix else None
        body = render(manifest.raw, name=name, image=args.image)
    except RenderError as exc:
        raise UsageError(str(exc)) from None
    name = body["metadata"]["name"]
    client.create_experiment(body)
    print(f"experiment {name} created in namespace {client.namespace}", file=sys.stderr)
    if not (args.wait or args.promote):
        return 0
    progress = Progress()
    experiment = client.wait(name, args.timeout, lambda e: _follow(e, progress))
    _describe(experiment)
    code = 0 if condition(experiment) == "Succeeded" else 1
    if args.promote:
        code = max(code, _promote(args, from_katib(experiment)))
    return code


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
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
        from pipeline.redaction import redact

        _print_json(redact(experiment.to_dict()))
    else:
        _describe(experiment)
    return 0


def _end_orphaned_runs(client: Any, experiment: str, uri: str, retry_seconds: float) -> None:
    from pipeline.cluster.reconcile import end_orphaned_runs
    from trial_image.errors import TrackingError

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
    from pipeline.engine.metrics_collector import metric_strategy

    client = _client(args)
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
        _print_json(rows)
        return 0
    print(f"{'TRIAL':<34} {'STATUS':<19} {objective:<22} PARAMETERS")
    for r in rows:
        params = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
        print(f"{r['name']:<34} {r['status']:<19} {r[objective] or '-':<22} {params[:120]}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    client = _client(args)
    client.delete_experiment(args.experiment)
    print(f"experiment {args.experiment} deleted from namespace {client.namespace} "
          "(its trials and suggestion go with it)", file=sys.stderr)
    return 0


def gates_of(args: argparse.Namespace) -> Any:
    from pipeline.promotion.gates import Gates

    return Gates(args.min_accuracy, args.max_latency_ms, args.max_parameters)


def _promote(args: argparse.Namespace, optimal: Any, registry: Any = None) -> int:
    from pipeline.promotion.registry import Registry

    registry = registry or Registry(_tracking_uri(args), args.model or optimal.experiment,
                                    args.mlflow_retry_seconds)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints its own progress
        decision = registry.promote(optimal, args.min_improvement, metric=args.metric,
                                    maximize=not args.minimize_metric, gates=gates_of(args))
    if args.output == "json":
        _print_json(decision.to_dict())
        return 0
    print(decision_line(decision, optimal, args.metric or optimal.metric))
    return 0


def decision_line(decision: Any, optimal: Any, metric: str) -> str:
    """One line: the version, what it scored, the decision and why."""
    line = (f"{decision.model} version {decision.version} (trial {optimal.trial}, {metric} = "
            f"{decision.score:.6g}): {decision.decision}")
    champion = "" if decision.champion_score is None else (
        f" ({metric} = {decision.champion_score:.6g}"
        + (" on the same test split)" if decision.same_data else ")"))
    if not decision.created:
        line += " (already registered: no new version)"
    elif decision.decision == "champion":
        line += (f", replacing version {decision.previous_champion}"
                 + (champion if decision.same_data else "")
                 if decision.previous_champion else " (first champion)")
    if decision.decision != "champion":
        line += f" ({decision.reason})" if decision.reason else ""
        if decision.champion:
            line += f"; champion stays version {decision.champion}{champion}"
    return line


def cmd_promote(args: argparse.Namespace) -> int:
    from pipeline.promotion.optimal_trial import from_engine_state, from_katib
    from pipeline.promotion.registry import Registry

    if args.rollback:
        with contextlib.redirect_stdout(sys.stderr):
            result = Registry(_tracking_uri(args), args.rollback,
                              args.mlflow_retry_seconds).rollback()
        print(f"{result['model']}: champion is version {result['champion']} again (version "
              f"{result['rolled_back']} rolled back)")
        return 0
    if not args.experiment:
        raise UsageError("promote: give an EXPERIMENT, or --rollback MODEL")
    if args.stage in ("auto", "final"):  # the final model of `nasflow finalize`, if there is one
        registry = Registry(_tracking_uri(args), args.model or args.experiment,
                            args.mlflow_retry_seconds)
        final = registry.final_trial(args.experiment, args.namespace or "default")
        if final is not None:
            return _promote(args, final, registry)
        if args.stage == "final":
            raise UsageError(f"experiment {args.experiment!r} has no final model: run `nasflow "
                             "finalize` first")
    optimal = local_run(args, from_engine_state) or from_katib(
        _client(args).get_experiment(args.experiment))
    return _promote(args, optimal)


def local_run(args: argparse.Namespace, read: Callable[[Path, str], T]) -> T | None:
    """What ``read`` finds of the local run (``--workdir``) when ``--source`` allows it and
    there is one; None: the experiment is Katib's."""
    if args.source in ("auto", "local"):
        with contextlib.suppress(FileNotFoundError):
            return read(args.workdir, args.experiment)
        if args.source == "local":
            raise UsageError(f"no local run of {args.experiment!r} in {args.workdir}")
    return None


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.retraining import ConfigError, PipelineConfig, run_pipeline

    try:
        config = PipelineConfig.load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    manifest = load_experiment(config.experiment, None)
    _for_cluster(manifest)
    args.namespace = config.namespace or args.namespace
    client = _client(args)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(config, manifest.raw, client, _tracking_uri(args),
                              log=lambda line: print(line, file=sys.stderr),
                              retry_seconds=args.mlflow_retry_seconds)
    if args.output == "json":
        _print_json(result)
    return 0 if result["phase"] == "Succeeded" else 1


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", "-n", help="default: the kubeconfig context's, or the "
                   "service account's in a pod")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    p.add_argument("--context", help="kubeconfig context")


def _promotion_flags(p: argparse.ArgumentParser) -> None:
    decision_flags(p)
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///./mlflow.db)")
    mlflow_retry_flag(p)


def decision_flags(p: argparse.ArgumentParser) -> None:
    """How a promotion decides: the model, the comparison and the gates."""
    p.add_argument("--model", help="registered model name (default: the experiment name)")
    p.add_argument("--min-improvement", type=float, default=0.0,
                   help="move champion only when better by at least this much (default 0)")
    p.add_argument("--metric", help="compare on this MLflow run metric instead of the objective "
                   "(needed for a DARTS genotype objective), e.g. Test-Accuracy")
    p.add_argument("--minimize-metric", action="store_true",
                   help="with --metric: lower is better")
    g = p.add_argument_group("gates (a model that fails one stays challenger)")
    g.add_argument("--min-accuracy", type=float, help="Test-Accuracy at least this")
    g.add_argument("--max-latency-ms", type=float,
                   help="Inference-Latency-Ms (batch 1, CPU) at most this")
    g.add_argument("--max-parameters", type=float, help="Parameter-Count at most this")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="submit an Experiment to Katib",
                       description="Validate an Experiment, refuse local-only algorithms, and "
                       "create it on the cluster.")
    p.add_argument("file", type=Path)
    p.add_argument("--name", help="which Experiment of a multi-document file")
    p.add_argument("--name-suffix", help="submit as <name>-<suffix> (Katib names are unique)")
    p.add_argument("--image", help="trial image for the primary container")
    p.add_argument("--wait", action="store_true", help="follow it until it ends")
    p.add_argument("--timeout", type=float, default=6 * 3600, help="seconds to wait")
    p.add_argument("--promote", action="store_true", help="wait, then promote the best model")
    p.add_argument("--output", choices=("text", "json"), default="text")
    _cluster_flags(p)
    _promotion_flags(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("status", help="conditions, trial counts and optimal trial",
                       description="Conditions, trial counts and the optimal trial. With a "
                       "tracking server (--tracking-uri or $MLFLOW_TRACKING_URI) it also ends "
                       "MLflow runs left RUNNING by trials Katib killed or failed.")
    p.add_argument("experiment")
    p.add_argument("--watch", action="store_true", help="progress until it ends")
    p.add_argument("--timeout", type=float, default=6 * 3600)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI; none: not "
                   "checked)")
    mlflow_retry_flag(p)
    _cluster_flags(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("trials", help="the trials of an experiment on the cluster")
    p.add_argument("experiment")
    p.add_argument("--output", choices=("text", "json"), default="text")
    _cluster_flags(p)
    p.set_defaults(func=cmd_trials)

    p = sub.add_parser("delete", help="delete an experiment (and its trials) from the cluster")
    p.add_argument("experiment")
    _cluster_flags(p)
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("promote", help="register the best model; champion/challenger",
                       description="Register the optimal trial's model in the MLflow registry "
                       "and move the alias `champion` to it when it is better, else `challenger`."
                       " Works for experiments run by `nasflow run` (state in --workdir) and by "
                       "Katib.")
    p.add_argument("experiment", nargs="?")
    p.add_argument("--rollback", metavar="MODEL",
                   help="give `champion` back to the version the current one replaced")
    p.add_argument("--source", choices=("auto", "local", "katib"), default="auto",
                   help="auto: the local run if --workdir has one, else Katib")
    p.add_argument("--stage", choices=("auto", "final", "search"), default="auto",
                   help="auto: the final model of `nasflow finalize` if there is one (compared "
                   "on Test-Accuracy, the champion measured on the same test split), else the "
                   "search's optimal trial")
    p.add_argument("--workdir", type=Path, default=Path(".nasflow"))
    p.add_argument("--output", choices=("text", "json"), default="text")
    _cluster_flags(p)
    _promotion_flags(p)
    p.set_defaults(func=cmd_promote)

    p = sub.add_parser("pipeline",
                       help="scheduled retraining: submit, wait, finalize, promote, prune",
                       description="What the CronJob runs: submit the configured experiment "
                       "under a unique name, wait, train the final model as Jobs, promote it "
                       "through the gates if it beats the champion on the same test split, "
                       "delete old experiments.")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--tracking-uri")
    mlflow_retry_flag(p)
    p.add_argument("--output", choices=("text", "json"), default="text")
    _cluster_flags(p)
    p.set_defaults(func=cmd_pipeline)
