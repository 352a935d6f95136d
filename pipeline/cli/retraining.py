"""``nasflow pipeline``: what the retraining CronJob runs (:mod:`pipeline.retraining`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from pipeline.cli.common import (
    UsageError,
    cluster_flags,
    custom_algorithms_flag,
    for_cluster,
    katib_client,
    load_experiment,
    mlflow_retry_flag,
    print_json,
    tracking_uri,
    workdir,
)


def retrain(config: Any, args: argparse.Namespace, only: str | None = None,
            told: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run of ``config`` on ``args.engine`` (``only``: one stage, after what ``told``
    says); the result ``--output json`` prints. Logs go to stderr."""
    from pipeline.engine.experiment import EngineError
    from pipeline.retraining import EmbeddedSearch, KatibSearch, run_pipeline
    from pipeline.validation import engine_support

    manifest = load_experiment(config.experiment, None)
    if args.engine == "katib":
        args.namespace = config.namespace or args.namespace
        client = katib_client(args)
        if only in (None, "search"):
            for_cluster(manifest, client, args.allow_custom_algorithms)
        engine: Any = KatibSearch(client)
    else:
        unsupported = engine_support(manifest.experiment)
        if unsupported:
            raise UsageError(f"{manifest.source}: not supported by the embedded engine: "
                             + "; ".join(unsupported))
        engine = EmbeddedSearch(args.workdir)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            return run_pipeline(config, manifest.raw, engine, tracking_uri(args),
                                log=lambda line: print(line, file=sys.stderr, flush=True),
                                retry_seconds=args.mlflow_retry_seconds, only=only, told=told)
    except EngineError as exc:
        raise UsageError(str(exc)) from None


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.retraining import ConfigError, PipelineConfig

    try:
        config = PipelineConfig.load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    result = retrain(config, args)
    if args.output == "json":
        print_json(result)
    return 0 if result["phase"] == "Succeeded" else 1


def engine_flags(p: argparse.ArgumentParser) -> None:
    """Where the search runs: Katib (the cluster's Jobs do the rest) or the embedded engine."""
    p.add_argument("--engine", choices=("katib", "embedded"), default="katib",
                   help="katib (default): submit to the cluster, final training and compression "
                   "as Jobs; embedded: the search, final training and compression here")
    p.add_argument("--workdir", type=workdir, default=Path(".nasflow"),
                   help="the embedded engine's state (default .nasflow)")
    p.add_argument("--tracking-uri")
    mlflow_retry_flag(p)
    custom_algorithms_flag(p)
    cluster_flags(p)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pipeline",
                       help="scheduled retraining: submit, wait, prune, finalize, promote, "
                       "compress",
                       description="What the CronJob runs: submit the configured experiment "
                       "under a unique name, wait, delete old experiments, train the final "
                       "model as Jobs, promote it through the gates if it beats the champion "
                       "on the same test split, compress the champion.")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--output", choices=("text", "json"), default="text")
    engine_flags(p)
    p.set_defaults(func=cmd_pipeline)
