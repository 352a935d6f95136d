"""``nasflow promote``: the registry's champion/challenger decision, and the flags and one-line
report every command that promotes shares."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    UsageError,
    cluster_flags,
    experiment_name,
    katib_client,
    local_run,
    mlflow_retry_flag,
    number,
    print_json,
    tracking_uri,
    workdir,
)


def gates_of(args: argparse.Namespace) -> Any:
    from pipeline.promotion.gates import Gates

    try:
        return Gates(args.min_accuracy, args.max_latency_ms, args.max_parameters,
                     ",".join(args.gate or ()))
    except ValueError as exc:
        raise UsageError(f"--gate: {exc}") from None


def decisions_of(args: argparse.Namespace, model: str, schedule: Any, compress: Any = None,
                 distillation: Sequence[str] = ()) -> Any:
    """The :class:`pipeline.lifecycle.Decisions` of the promotion flags (``decision_flags``),
    the same fields a ``nasflow pipeline`` config gives."""
    from pipeline.lifecycle import Decisions

    return Decisions(model, schedule, promote=getattr(args, "promote", True),
                     min_improvement=args.min_improvement, metric=args.metric,
                     maximize=not args.minimize_metric, gates=gates_of(args), compress=compress,
                     distillation=distillation)


def promote_trial(args: argparse.Namespace, optimal: Any, registry: Any = None) -> int:
    from pipeline.promotion.registry import Registry

    registry = registry or Registry(tracking_uri(args), args.model or optimal.experiment,
                                    args.mlflow_retry_seconds)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow prints its own progress
        decision = registry.promote(optimal, args.min_improvement, metric=args.metric,
                                    maximize=not args.minimize_metric, gates=gates_of(args))
    if args.output == "json":
        print_json(decision.to_dict())
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
    if decision.other_test_data:
        line += (f"; note: version {decision.other_test_data} was tested on different test data "
                 f"(its test digest differs): the scores compare different splits")
    return line


def cmd_promote(args: argparse.Namespace) -> int:
    from pipeline.promotion.optimal_trial import from_engine_state, from_katib
    from pipeline.promotion.registry import Registry

    if args.rollback:
        with contextlib.redirect_stdout(sys.stderr):
            result = Registry(tracking_uri(args), args.rollback,
                              args.mlflow_retry_seconds).rollback()
        print(f"{result['model']}: champion is version {result['champion']} again (version "
              f"{result['rolled_back']} rolled back)")
        return 0
    if not args.experiment:
        raise UsageError("promote: give an EXPERIMENT, or --rollback MODEL")
    if args.constraint:
        return _promote_within_budget(args)
    if args.stage in ("auto", "final"):  # the final model of `nasflow finalize`, if there is one
        registry = Registry(tracking_uri(args), args.model or args.experiment,
                            args.mlflow_retry_seconds)
        final = registry.final_trial(args.experiment, args.namespace or "default")
        if final is not None:
            return promote_trial(args, final, registry)
        if args.stage == "final":
            raise UsageError(f"experiment {args.experiment!r} has no final model: run `nasflow "
                             "finalize` first")
    optimal = local_run(args, from_engine_state) or from_katib(
        katib_client(args).get_experiment(args.experiment))
    return promote_trial(args, optimal)


def _promote_within_budget(args: argparse.Namespace) -> int:
    from pipeline.promotion.constraints import Constraint, within_budget
    from pipeline.promotion.registry import Registry

    try:
        constraints = [Constraint.parse(text) for text in args.constraint]
    except ValueError as exc:
        raise UsageError(f"nasflow promote: {exc}") from None
    registry = Registry(tracking_uri(args), args.model or args.experiment,
                        args.mlflow_retry_seconds)
    optimal = within_budget(registry, args.experiment, args.namespace or "default", constraints,
                            args.stage, args.metric)
    return promote_trial(args, optimal, registry)


def promotion_flags(p: argparse.ArgumentParser) -> None:
    decision_flags(p)
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///./mlflow.db)")
    mlflow_retry_flag(p)


def decision_flags(p: argparse.ArgumentParser) -> None:
    """How a promotion decides: the model, the comparison and the gates."""
    p.add_argument("--model", help="registered model name (default: the experiment name)")
    p.add_argument("--min-improvement", type=number(-1e9, 1e9), default=0.0,
                   help="move champion only when better by at least this much (default 0)")
    p.add_argument("--metric", help="compare on this MLflow run metric instead of the objective "
                   "(needed for a DARTS genotype objective), e.g. Test-Accuracy")
    p.add_argument("--minimize-metric", action="store_true",
                   help="with --metric: lower is better")
    g = p.add_argument_group("gates (a model that fails one stays challenger)")
    g.add_argument("--min-accuracy", type=number(0, 1), help="Test-Accuracy at least this")
    g.add_argument("--max-latency-ms", type=number(0, 1e9, low_open=True),
                   help="Inference-Latency-Ms (batch 1, CPU) at most this")
    g.add_argument("--max-parameters", type=number(0, 1e15, low_open=True),
                   help="Parameter-Count at most this")
    g.add_argument("--gate", action="append", metavar="METRIC<=N",
                   help="any run metric within a bound (repeat for several), e.g. "
                   "Test-RMSE<=55 or Test-R2>=0.4 for a regression")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("promote", help="register the best model; champion/challenger",
                       description="Register the optimal trial's model in the MLflow registry "
                       "and move the alias `champion` to it when it is better, else `challenger`."
                       " Works for experiments run by `nasflow run` (state in --workdir) and by "
                       "Katib.")
    p.add_argument("experiment", nargs="?", type=experiment_name)
    p.add_argument("--rollback", metavar="MODEL",
                   help="give `champion` back to the version the current one replaced")
    p.add_argument("--source", choices=("auto", "local", "katib"), default="auto",
                   help="auto: the local run if --workdir has one, else Katib")
    p.add_argument("--stage", choices=("auto", "final", "search"), default="auto",
                   help="auto: the final model of `nasflow finalize` if there is one (compared "
                   "on Test-Accuracy or Test-RMSE, the champion measured on the same test "
                   "split), else the search's optimal trial")
    p.add_argument("--constraint", action="append", metavar="METRIC<=N",
                   help="promote the best model whose MLflow run meets this (repeat "
                   "for several), e.g. Inference-Latency-Ms<=2 or Parameter-Count<=20000: a "
                   "final model first (Test-Accuracy, or the lowest Test-RMSE), else the search "
                   "trials (Best-Validation-Accuracy or -RMSE, or --metric); none meets them: "
                   "exit 1 with the closest")
    p.add_argument("--workdir", type=workdir, default=Path(".nasflow"))
    p.add_argument("--output", choices=("text", "json"), default="text")
    cluster_flags(p)
    promotion_flags(p)
    p.set_defaults(func=cmd_promote)
