"""``nasflow``: validate Katib Experiments, run them on the embedded engine or on Katib, train the
final model, promote it. One module per command group; ``common`` holds what they share.

Exit codes: 0 success; 1 the experiment Failed (e.g. too many failed trials), or the cluster or
the registry refused (one line says why); 2 bad input (a malformed manifest, reported with its
field path, before anything starts), or the experiment is being run by another engine; 4 MLflow
unreachable or refusing (one line, after ``--mlflow-retry-seconds``; ``run`` started no trial);
130 interrupted (resumable with ``--resume``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from pipeline.cli import access, cluster, compress, finalize, kfp, local, promote, retraining
from pipeline.cli.common import UsageError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasflow",
        description="Neural architecture search with Katib Experiment manifests: validate them, "
        "run them on the embedded engine, or (with a cluster) submit them to Katib.",
        epilog="Exit codes: 0 ok, 1 experiment failed or cluster/registry error, 2 bad input, "
        "4 MLflow unreachable, 130 interrupted.")
    sub = parser.add_subparsers(dest="command", required=True)
    local.add_parsers(sub)
    cluster.add_parsers(sub)
    promote.add_parser(sub)
    retraining.add_parser(sub)
    finalize.add_parser(sub)
    compress.add_parser(sub)
    access.add_parser(sub)
    kfp.add_parser(sub)
    return parser


def quiet_libraries() -> None:
    """TensorFlow's C++ start-up lines and MLflow's INFO lines would land between the progress
    lines; trial logs keep theirs. A user's own TF_CPP_MIN_LOG_LEVEL or MLFLOW_LOGGING_LEVEL
    wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    # MLflow's "View run … at" lines on ending a run (and the request that reads the run for them)
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")


def main(argv: list[str] | None = None) -> int:
    quiet_libraries()
    from pipeline.cluster.errors import ClusterError
    from pipeline.compression import CompressionError
    from pipeline.finalize.errors import FinalizeError, NoCandidates
    from pipeline.promotion.optimal_trial import NoOptimalTrial
    from pipeline.promotion.registry import PromotionError
    from trial_image.contract import TrackingError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except NoCandidates as exc:
        print(f"nasflow {args.command}: {exc}", file=sys.stderr)
        return 2
    except (ClusterError, PromotionError, NoOptimalTrial, FinalizeError,
            CompressionError) as exc:
        print(f"nasflow {args.command}: {exc}", file=sys.stderr)
        return 1
    except TrackingError as exc:
        print(f"nasflow {args.command}: MLflow: {exc}", file=sys.stderr)
        return 4
    except KeyboardInterrupt:
        print(f"nasflow {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, the trace in a file
        return last_resort(args, exc)


def last_resort(args: argparse.Namespace, exc: Exception) -> int:
    """No user sees a traceback: one line says what failed and where the full trace is (the
    run's workdir, else ./.nasflow); an MLflow outage is exit 4 like any other."""
    import traceback

    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if type(exc).__module__.startswith(("mlflow", "requests", "urllib3")):
        from trial_image.contract import access_problem, is_outage

        refused = access_problem(exc)
        if refused:
            print(f"nasflow {args.command}: {refused}", file=sys.stderr)
            return 4
        if is_outage(exc):
            print(f"nasflow {args.command}: MLflow unreachable: {first}", file=sys.stderr)
            return 4
    workdir = getattr(args, "workdir", None) or Path(".nasflow")
    trace = "".join(traceback.format_exception(exc))
    for log in (Path(workdir) / "nasflow.log", Path(tempfile.gettempdir()) / "nasflow.log"):
        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("a") as f:
                f.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} nasflow "
                        f"{' '.join(sys.argv[1:])}\n{trace}")
            break
        except OSError:
            continue
    print(f"nasflow {args.command}: internal error: {type(exc).__name__}: {first} (the full "
          f"trace is in {log})", file=sys.stderr)
    return 1
