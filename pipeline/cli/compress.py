"""``nasflow compress MODEL_URI``: LiteRT, pruned and distilled variants of a registered model,
made where training runs, each registered (within the accuracy budget) under its own alias."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    COUNT,
    SECONDS,
    UsageError,
    cluster_flags,
    katib_client,
    mlflow_retry_flag,
    number,
    tracking_uri,
)


def variants(text: str) -> str:
    """An argparse type: known variant names only (exit 2 at once, not in the subprocess)."""
    from trial_image.contract import TrialError, variant_names

    try:
        return ",".join(variant_names(text))
    except TrialError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--variants: ")) from None


def variant_flags(p: argparse.ArgumentParser) -> None:
    from trial_image.contract import COMPRESSION_VARIANTS

    g = p.add_argument_group("compression")
    g.add_argument("--variants", type=variants, default=",".join(COMPRESSION_VARIANTS),
                   help="comma-separated: float32, float16, int8-dynamic, int8-full (LiteRT), "
                   "pruned-<P> (P %% sparsity), distilled (default: all of them)")
    g.add_argument("--max-accuracy-drop", type=number(-100, 100), default=0.5, metavar="POINTS",
                   help="a variant more than this many points below the source model is "
                   "logged but not registered (default 0.5)")
    g.add_argument("--temperature", type=number(0, 100, low_open=True), metavar="T",
                   help="distillation: the teacher's outputs softened at T (default 1)")
    g.add_argument("--alpha", type=number(0, 1),
                   help="distillation: weight of the labels against the teacher (default 0.5; "
                   "1: labels alone)")
    g.add_argument("--distill-epochs", type=COUNT, metavar="N", help="distillation (default 40)")


def compress(args: argparse.Namespace, uri: str, model_uri: str, log: Any) -> list[Any]:
    """Make, measure and register the variants of ``model_uri``; their results."""
    from pipeline.compression import CompressionPlan, compress_model, run_locally, run_on_cluster
    from pipeline.promotion.registry import Registry


    def execute(flags: list[str], source_run: Any) -> None:
        if getattr(args, "cluster", False):
            run_on_cluster(katib_client(args), source_run.data.tags.get("katib.experiment", ""),
                           flags, args.timeout, args.image, log)
        else:
            run_locally(flags, uri, log, Path(getattr(args, "workdir", None) or ".nasflow")
                        / "compress.log")

    registry = Registry(uri, model_name(model_uri), args.mlflow_retry_seconds)
    with contextlib.redirect_stdout(sys.stderr):  # MLflow's registration lines
        return compress_model(registry, model_uri,
                              CompressionPlan(args.variants, args.max_accuracy_drop), execute,
                              log, args.mlflow_retry_seconds, distillation_flags(args))


def model_name(model_uri: str) -> str:
    """The registered model of ``models:/NAME@ALIAS`` or ``models:/NAME/N`` (UsageError if the
    URI is neither)."""
    from trial_image.contract import parse_model_uri

    parsed = parse_model_uri(model_uri)
    if parsed is None:
        raise UsageError(f"nasflow compress: expected models:/NAME@ALIAS or models:/NAME/N, got "
                         f"{model_uri!r}")
    return parsed[0]


def distillation_flags(args: argparse.Namespace) -> list[str]:
    """The distillation flags given, for the trial image (which holds their defaults)."""
    given = {"temperature": args.temperature, "alpha": args.alpha,
             "distill-epochs": args.distill_epochs}
    return [f"--{name}={value:g}" for name, value in given.items() if value is not None]


def print_results(results: list[Any], model: str, output: str) -> None:
    from pipeline.promotion.registry import variants_of

    if output == "json":
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return
    for r in results:
        where = (f"models:/{variants_of(model)}@{r.variant} (version {r.version})"
                 if r.version else f"not registered: {r.reason}")
        change = f"{-r.drop:+.2f} pt" if r.metric == "Test-Accuracy" else f"{r.drop:+.2f} %"
        measure = r.metric.replace("Test-", "test ").replace("Accuracy", "accuracy")
        print(f"{r.variant:<13} {measure} {r.score:.4f} ({change}), "
              f"{r.size:>7.0f} bytes ({r.compressed:.0f} gzip), {r.latency_ms:.3f} ms: {where}")


def cmd_compress(args: argparse.Namespace) -> int:
    uri = tracking_uri(args)
    results = compress(args, uri, args.model_uri,
                       lambda line: print(f"nasflow compress: {line}", file=sys.stderr))
    print_results(results, model_name(args.model_uri), args.output)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compress", help="LiteRT int8/float16, pruned and distilled variants of a model",
        description="Compress a registered model (e.g. models:/enas-digits@champion): LiteRT "
        "post-training quantization, magnitude pruning, distillation into a smaller trial of "
        "the same search. Each variant is measured with itself (the LiteRT interpreter), "
        "logged as an MLflow run under the model's run, and registered as a version of the "
        "same model with alias <variant>; champion never moves.")
    p.add_argument("model_uri", metavar="MODEL_URI")
    variant_flags(p)
    p.add_argument("--cluster", action="store_true",
                   help="run the compression as a Job of the experiment's trial template")
    p.add_argument("--image", help="trial image of the Job (--cluster)")
    p.add_argument("--timeout", type=SECONDS, default=3600, help="seconds to wait for the Job")
    p.add_argument("--tracking-uri", help="MLflow (default $MLFLOW_TRACKING_URI or "
                   "sqlite:///./mlflow.db)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    mlflow_retry_flag(p)
    cluster_flags(p)
    p.set_defaults(func=cmd_compress)
