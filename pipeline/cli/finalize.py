"""``nasflow finalize``: final training of a finished search, on either engine (see
:mod:`pipeline.finalize`). Also what ``nasflow run --finalize`` and ``nasflow pipeline`` call."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    COUNT,
    SECONDS,
    UsageError,
    cluster_flags,
    experiment_name,
    katib_client,
    load_experiment,
    local_run,
    mlflow_command,
    mlflow_retry_flag,
    number,
    review_command,
    workdir,
)
from pipeline.cli.compress import distillation_flags, print_results
from pipeline.cli.promote import decision_line, decisions_of


def schedule_flags(p: argparse.ArgumentParser) -> None:
    from pipeline.finalize import Schedule
    from trial_image.contract import AUGMENTATIONS, LR_SCHEDULES

    d = Schedule()
    g = p.add_argument_group("final training")
    g.add_argument("--top-k", type=number(1, 100, integer=True), default=d.top_k,
                   help=f"best search trials retrained in the selection (default {d.top_k})")
    g.add_argument("--seeds", type=number(1, 100, integer=True), default=d.seeds,
                   help=f"selection runs per candidate (default {d.seeds})")
    g.add_argument("--final-epochs", type=COUNT, default=d.epochs,
                   help=f"epochs of every final run (default {d.epochs})")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default=d.lr_schedule)
    g.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment)
    g.add_argument("--ensemble", type=number(1, 16, integer=True), default=d.ensemble,
                   metavar="K", help="average up to K finalists' final models when that beats "
                   f"the winner alone on validation (default {d.ensemble}; 1: never)")


def schedule_of(args: argparse.Namespace) -> Any:
    from pipeline.finalize import Schedule

    try:
        return Schedule(top_k=args.top_k, seeds=args.seeds, epochs=args.final_epochs,
                        lr_schedule=args.lr_schedule, augment=args.augment,
                        ensemble=args.ensemble)
    except ValueError as exc:
        raise UsageError(f"nasflow {args.command}: {exc} (--top-k, --seeds, --final-epochs)"
                         ) from None


def log(line: str) -> None:
    print(f"nasflow finalize: {line}", file=sys.stderr, flush=True)


def print_result(result: Any, output: str) -> None:
    if output == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return
    measure = result.test_metric.replace("Test-", "test ").replace("Accuracy", "accuracy")
    ensemble = result.ensemble or {}
    made = (f"an ensemble of {len(ensemble['members'])} finalists, {measure} "
            f"{result.test_score:.4f} (trial {result.winner} alone: "
            f"{ensemble['winner_test_score']:.4f}; " if ensemble.get("chosen") else
            f"trial {result.winner} trained again, {measure} {result.test_score:.4f} (")
    print(f"final model of {result.experiment}: {made}best search trial "
          f"{result.best_search_trial}: "
          + (f"{result.best_search_test_score:.4f})" if result.best_search_test_score
             is not None else "not measured)"))
    if result.champion_test_score is not None:
        print(f"  the current champion on the same test split: "
              f"{result.champion_test_score:.4f}")
    if result.ensemble is not None:
        print(f"  ensemble: {result.ensemble['reason']}")
    print(f"  MLflow run {result.final_run} ({result.seconds} s)")


def story_of(args: argparse.Namespace, manifest: Any) -> Any:
    """The :class:`pipeline.lifecycle.Decisions` of ``nasflow run``'s flags."""
    from pipeline.compression import CompressionPlan

    args.model = args.model or manifest.name
    return decisions_of(
        args, args.model, schedule_of(args) if args.finalize else None,
        CompressionPlan(args.variants, args.max_accuracy_drop) if args.compress else None,
        distillation_flags(args))


def after_search(args: argparse.Namespace, manifest: Any, uri: str, status: dict[str, Any],
                 pool: Any, decisions: Any) -> int:
    """``nasflow run --finalize --promote --compress``: the story of :mod:`pipeline.lifecycle`
    on the laptop, ending with the champion's URI and the commands to review and serve it."""
    from pipeline.lifecycle import LocalPlace, tell
    from pipeline.promotion.registry import variants_of

    model = decisions.model
    place = LocalPlace(manifest.name, args.workdir, manifest.experiment.spec.trial_template, uri,
                       log, args.mlflow_retry_seconds, pool)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints its own progress
        outcome = tell(place, decisions, uri, log, args.mlflow_retry_seconds)
    result, decision, optimal, variants = (outcome.final, outcome.decision, outcome.promoted,
                                           outcome.variants)
    if args.output == "json":
        print(json.dumps({"search": status, **outcome.to_dict()}, indent=2))
        return 0
    if result:
        print_result(result, "text")
    if decision:
        print(decision_line(decision, optimal, args.metric or optimal.metric))
    if variants:
        print_results(variants, model, "text")
    if decision:
        smallest = min((v for v in variants or [] if v.version), key=lambda v: v.size,
                       default=None)
        print(f"champion: models:/{model}@champion (version {decision.champion})\n"
              f"  review it: {review_command(uri, optimal.experiment)}\n"
              f"  serve it:  MLFLOW_TRACKING_URI={uri} " + mlflow_command(
                  f"models serve -m models:/{model}@champion --env-manager local -p 5001")
              + (f"\n  (or its {smallest.variant} variant: -m "
                 f"models:/{variants_of(model)}@{smallest.variant})"
                 if smallest else "")
              + ("\n  (the server asks who you are: export MLFLOW_TRACKING_USERNAME and "
                 "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN, in the shell that serves)"
                 if authenticated() else ""))
    return 0


def authenticated() -> bool:
    """This process talks to MLflow as a user (its credentials are never printed)."""
    return any(os.environ.get(v) for v in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_TOKEN"))


def cmd_finalize(args: argparse.Namespace) -> int:
    """The story of :mod:`pipeline.lifecycle` up to the final model, on either engine."""
    from pipeline.engine.trial import WarmPool
    from pipeline.finalize.candidates import from_state
    from pipeline.lifecycle import Decisions, KatibPlace, LocalPlace, tell
    from trial_image.contract import default_tracking_uri

    uri = args.tracking_uri or default_tracking_uri()
    decisions = Decisions(args.model or args.experiment, schedule_of(args), promote=False)
    search = local_run(args, from_state)
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(sys.stderr))
        if search is not None:
            template = _local_template(search, args.file)
            pool = stack.enter_context(WarmPool())
            place: Any = LocalPlace(search.name, args.workdir, template, uri, log,
                                    args.mlflow_retry_seconds, pool)
        else:
            place = KatibPlace(katib_client(args), args.experiment, uri, args.timeout,
                               args.image, log, args.mlflow_retry_seconds)
        result = tell(place, decisions, uri, log, args.mlflow_retry_seconds).final
    print_result(result, args.output)
    return 0


def _local_template(search: Any, file: Path | None) -> Any:
    """The trial template: the manifest's (``--file``) or the one the engine stored, whose
    literal env values are redacted and so cannot run."""
    from pipeline.katib.redaction import REDACTED

    if file is not None:
        manifest = load_experiment(file, search.name)
        if manifest.name != search.name:
            raise UsageError(f"{file} defines experiment {manifest.name!r}, not {search.name!r}")
        return manifest.experiment.spec.trial_template
    template = search.experiment.spec.trial_template
    if REDACTED in json.dumps(template.trial_spec or {}):
        raise UsageError(f"the stored manifest of {search.name!r} has literal env values, which "
                         "nasflow does not keep: give the manifest with --file")
    return template


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "finalize", help="train the best search trials to a final model",
        description="Final training of a finished search: the top-k trials are retrained with "
        "the final schedule on the training split (several seeds; the test split is never "
        "read), the best by validation is trained on training + validation, evaluated once on "
        "the test split beside the current champion, and logged as an MLflow run with tag "
        "nasflow.role=final. Locally (the search's --workdir state) as trial processes; on a "
        "cluster as batch/v1 Jobs rendered from the experiment's trial template.")
    p.add_argument("experiment", type=experiment_name)
    p.add_argument("--source", choices=("auto", "local", "katib"), default="auto",
                   help="auto: the local run if --workdir has one, else Katib")
    p.add_argument("--workdir", type=workdir, default=Path(".nasflow"))
    p.add_argument("--file", type=Path, help="the experiment's manifest (local runs: needed "
                   "when its trial template has literal env values)")
    p.add_argument("--model", help="registered model whose champion the final model is "
                   "compared with (default: the experiment name)")
    p.add_argument("--image", help="trial image of the final Jobs (cluster)")
    p.add_argument("--timeout", type=SECONDS, default=6 * 3600, help="seconds to wait per Job")
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///./mlflow.db)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    mlflow_retry_flag(p)
    schedule_flags(p)
    cluster_flags(p)
    p.set_defaults(func=cmd_finalize)
