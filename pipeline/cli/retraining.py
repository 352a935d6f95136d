"""``nasflow pipeline``: what the retraining CronJob runs (:mod:`pipeline.retraining`)."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

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
)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from pipeline.retraining import ConfigError, PipelineConfig, run_pipeline

    try:
        config = PipelineConfig.load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    manifest = load_experiment(config.experiment, None)
    args.namespace = config.namespace or args.namespace
    client = katib_client(args)
    for_cluster(manifest, client, args.allow_custom_algorithms)
    with contextlib.redirect_stdout(sys.stderr):
        result = run_pipeline(config, manifest.raw, client, tracking_uri(args),
                              log=lambda line: print(line, file=sys.stderr),
                              retry_seconds=args.mlflow_retry_seconds)
    if args.output == "json":
        print_json(result)
    return 0 if result["phase"] == "Succeeded" else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    custom_algorithms_flag(p)
    cluster_flags(p)
    p.set_defaults(func=cmd_pipeline)
