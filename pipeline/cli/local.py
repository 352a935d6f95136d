"""``nasflow validate``, ``run`` and ``space``: the commands that need no cluster."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    DEFAULT_MANIFEST,
    Progress,
    UsageError,
    load_experiment,
    mlflow_retry_flag,
    number,
    review_command,
    workdir,
)
from pipeline.cli.compress import variant_flags
from pipeline.cli.finalize import after_search, schedule_flags, story_of
from pipeline.cli.promote import decision_flags
from trial_image.contract import tags, task_of


def cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.katib.manifest import ManifestError, load_documents
    from pipeline.katib.redaction import secret_warnings
    from pipeline.validation import cluster_support, engine_support, ignored_settings, validate

    worst = 0
    results = []
    for path in args.files:
        try:
            documents = load_documents(path)
        except ManifestError as exc:
            results.append({"source": str(path), "valid": False,
                            "problems": [str(p) for p in exc.problems]})
            worst = 2
            continue
        for source, raw in documents:
            experiment, problems = validate(source, raw)
            entry: dict[str, Any] = {"source": source, "valid": not problems,
                                     "problems": [str(p) for p in problems],
                                     "warnings": [str(w) for w in secret_warnings(raw)]}
            if not problems:
                entry["engine"] = engine_support(experiment)
                entry["cluster"] = cluster_support(experiment)
                entry["ignored"] = ignored_settings(experiment)
            else:
                worst = 2
            results.append(entry)
    if args.output == "json":
        print(json.dumps(results, indent=2))
        return worst
    for r in results:
        for warning in r.get("warnings", []):
            print(f"{r['source']}: warning: {warning}")
        if not r["valid"]:
            for problem in r["problems"]:
                print(f"{r['source']}: {problem}")
            continue
        notes = []
        if r["engine"]:
            notes.append("not supported by nasflow run: " + "; ".join(r["engine"]))
        if r["cluster"]:
            notes.append("not supported by Katib: " + "; ".join(r["cluster"]))
        print(f"{r['source']}: valid" + (f" ({' | '.join(notes)})" if notes else ""))
        for note in r["ignored"]:
            print(f"{r['source']}: note: {note}")
    return worst


def cmd_space(args: argparse.Namespace) -> int:
    from pipeline.katib import search_space
    from pipeline.suggestion.registry import algorithms

    manifest = load_experiment(args.file, args.name)
    size, how = search_space.size(manifest.experiment)
    spec = manifest.experiment.spec
    epochs = _epochs(manifest.raw)
    print(f"{manifest.name}: {spec.algorithm.algorithm_name}")
    print("search space: " + ("continuous" if math.isinf(size) else f"{size:.4g} candidates")
          + f" ({how})")
    trials = spec.max_trial_count
    if trials:
        parallel = spec.parallel_trial_count or 3
        print(f"budget: {trials} trials, {parallel} at a time"
              + (f", {epochs} epochs each" if epochs else ""))
        if not math.isinf(size):
            print(f"coverage: {min(trials / size, 1):.3g} of the space")
        # A trial's overhead and a digits epoch, from benchmarks/engine_overhead.py
        # (docs/benchmarks.md, "Figures behind the code").
        per_trial = 1 + 0.15 * (epochs or 10)
        settings = {a.name: str(a.value) for a in spec.algorithm.algorithm_settings or []}
        per_trial += algorithms()[spec.algorithm.algorithm_name].trial_overhead(settings)
        waves = math.ceil(trials / parallel)
        print(f"estimated cost on this machine (digits, CPU): ~{(4 + waves * per_trial) / 60:.1f}"
              f" min wall, {(4 * parallel + trials * per_trial) / 60:.1f} CPU-min")
    return 0


def _epochs(raw: dict[str, Any]) -> int | None:
    text = json.dumps(raw.get("spec", {}).get("trialTemplate", {}))
    for token in ("--epochs=", "--num-epochs=", "--num_epochs="):
        start = text.find(token)
        if start >= 0:
            digits = "".join(c for c in text[start + len(token):start + len(token) + 6]
                             if c.isdigit())
            if digits:
                return int(digits)
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from pipeline.engine.experiment import EngineError, EngineOptions, ExperimentEngine
    from pipeline.engine.trial import WarmPool
    from pipeline.katib.status import ExperimentCondition
    from pipeline.validation import engine_support, ignored_settings
    from trial_image.contract import default_tracking_uri

    manifest = load_experiment(args.file, args.name)
    unsupported = engine_support(manifest.experiment)
    if unsupported:
        raise UsageError(f"{manifest.source}: not supported by nasflow run: "
                         + "; ".join(unsupported))
    for note in ignored_settings(manifest.experiment):
        print(f"nasflow run: note: {note}", file=sys.stderr)
    uri = None if args.no_mlflow else (args.tracking_uri or default_tracking_uri())
    if uri is None and (args.finalize or args.promote):
        raise UsageError("--finalize and --promote need MLflow: drop --no-mlflow")
    if args.compress and not args.promote:
        raise UsageError("--compress compresses the champion: add --promote")
    decisions = story_of(args, manifest) if args.finalize or args.promote else None
    if decisions is not None:  # before the search: a registry the story could not write to
        from pipeline.lifecycle import preflight

        preflight(decisions, uri, args.mlflow_retry_seconds)
    # --finalize reuses the search's warm workers (TensorFlow already imported)
    with contextlib.nullcontext() if args.cold_trials else WarmPool() as pool:
        options = EngineOptions(workdir=args.workdir, tracking_uri=uri, seed=args.seed,
                                resume=args.resume, restart=args.restart,
                                warm_trials=pool is not None, pool=pool,
                                mlflow_retry_seconds=args.mlflow_retry_seconds,
                                on_progress=None if args.quiet else Progress())
        started = time.time()
        try:
            # stdout carries only the summary / JSON: MLflow prints run links on its own.
            with contextlib.redirect_stdout(sys.stderr):
                status = ExperimentEngine(manifest, options).run()
        except EngineError as exc:
            raise UsageError(str(exc)) from None
        if not args.quiet and sys.stderr.isatty():
            sys.stderr.write("\n")
        status["elapsedSeconds"] = round(time.time() - started, 1)
        condition = status["conditions"][-1]
        # Katib ends a search whose every trial failed (without maxFailedTrialCount)
        # Succeeded; with trials and no optimal one there is nothing to use: exit 1 all the same
        succeeded = condition["type"] == ExperimentCondition.SUCCEEDED and not (
            status["trials"] and status["currentOptimalTrial"] is None)
        after = (args.finalize or args.promote or args.compress) and succeeded
        if args.output == "json" and not after:
            print(json.dumps(status, indent=2))
        elif not args.quiet and args.output == "text":
            _summary(manifest, status, uri, review=not after)
        if condition["reason"] == "ExperimentInterrupted":
            return 130
        if not succeeded:
            return 1
        if after:
            return after_search(args, manifest, uri, status, pool, decisions)
    return 0


def _summary(manifest: Any, status: dict[str, Any], uri: str | None, review: bool) -> None:
    condition = status["conditions"][-1]
    print(f"experiment {status['name']}: {condition['type']} ({condition['reason']}: "
          f"{condition['message']}) in {status['elapsedSeconds']} s")
    print(f"trials: {status['trials']} ({status['trialsSucceeded']} succeeded, "
          f"{status['trialsFailed']} failed, {status['trialsEarlyStopped']} early-stopped, "
          f"{status['trialMetricsUnavailable']} without metrics, {status['trialsKilled']} killed)")
    optimal = status["currentOptimalTrial"]
    if optimal is None:
        print("no trial reported the objective")
        return
    print(f"best trial: {optimal['bestTrialName']}")
    for metric in optimal["observation"]["metrics"]:
        print(f"  {metric['name']}: max {metric['max']}, min {metric['min']}, "
              f"latest {metric['latest']}")
    for a in optimal["parameterAssignments"]:
        print(f"  {a['name']} = {a['value']}")
    test = _test_measure(uri, optimal["bestTrialName"]) if uri else None
    if test is not None:
        print(f"  {test[0]} (held-out, evaluated once): {test[1]:.4f}")
    front = status.get("paretoFront")
    if front:
        print(f"Pareto front: {len(front)} trial(s) no other trial beats on every objective")
        for row in front:
            print(f"  {row['trialName']}: " + ", ".join(
                f"{metric} {value:.6g}" for metric, value in row["values"].items()))
    if uri and review:
        print(f"review it: {review_command(uri, status['name'])}")


def _test_measure(uri: str, trial: str) -> tuple[str, float] | None:
    from mlflow import MlflowClient

    try:
        runs = MlflowClient(uri).search_runs(
            [e.experiment_id for e in MlflowClient(uri).search_experiments()],
            f"tags.`katib.trial` = '{trial}'", max_results=1)
    except Exception:  # noqa: BLE001 - the summary line is optional
        return None
    if not runs:
        return None
    metric = task_of(runs[0].data.tags.get(tags.TASK)).test_metric
    value = runs[0].data.metrics.get(metric)
    return None if value is None else (metric, value)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check manifests as Katib's webhook would",
                       description="Validate Katib Experiment manifests; every problem names its "
                       "field path. Exit 2 if any is invalid.")
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run an Experiment on the embedded engine",
                       description="Run a Katib Experiment manifest locally with Katib's "
                       "semantics. Without FILE: ENAS on the 8x8 digits (offline).")
    p.add_argument("file", nargs="?", type=Path, default=DEFAULT_MANIFEST)
    p.add_argument("--name", help="which Experiment of a multi-document file")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped or killed run; finished trials are kept")
    p.add_argument("--restart", action="store_true", help="discard saved state, start over")
    p.add_argument("--workdir", type=workdir, default=Path(".nasflow"),
                   help="where experiment state and trial logs live (default .nasflow)")
    p.add_argument("--seed", type=number(0, 2**32 - 1, integer=True), default=0,
                   help="makes the search reproducible")
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///./mlflow.db)")
    p.add_argument("--no-mlflow", action="store_true",
                   help="no parent run; trials log where $MLFLOW_TRACKING_URI points")
    mlflow_retry_flag(p)
    p.add_argument("--cold-trials", action="store_true",
                   help="start every `python -m trial_image` trial as a new process instead "
                   "of in a warm worker that imported TensorFlow already")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="json: the final Katib-style status on stdout")
    p.add_argument("--finalize", action="store_true",
                   help="then train the best trials to a final model (as `nasflow finalize`)")
    p.add_argument("--promote", action="store_true",
                   help="then promote the final model, or the optimal trial without "
                   "--finalize (as `nasflow promote`)")
    p.add_argument("--compress", action="store_true",
                   help="then compress the champion (as `nasflow compress`: LiteRT, pruned, "
                   "distilled variants, each registered under its alias)")
    decision_flags(p)
    schedule_flags(p)
    variant_flags(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("space", help="size of the search space and cost estimate",
                       description="Print the number of candidates (ENAS: operations^layers x "
                       "2^skip-bits) and an estimate of the run's cost.")
    p.add_argument("file", type=Path)
    p.add_argument("--name")
    p.set_defaults(func=cmd_space)
