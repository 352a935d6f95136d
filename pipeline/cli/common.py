"""What every ``nasflow`` command shares: bad-input errors, loading a manifest, the progress line,
MLflow and cluster flags, and the commands printed for the user to type."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from trial_image.contract import number, writable_folder

ROOT = Path(__file__).resolve().parents[2]
workdir = writable_folder  # an argparse type: a folder nasflow can write its state under


DEFAULT_MANIFEST = ROOT / "manifests" / "experiments" / "enas-digits.yaml"


T = TypeVar("T")


class UsageError(Exception):
    """Bad input: printed, exit code 2."""


SECONDS = number(0, 30 * 86400, low_open=True)  # a timeout: positive, at most 30 days
COUNT = number(1, 10_000, integer=True)


def experiment_name(text: str) -> str:
    """An argparse type: a Katib experiment name (Katib's rule, :func:`check_name`), so a name
    never reaches outside the workdir (``../x``, ``/etc``)."""
    from pipeline.cluster.render import RenderError, check_name

    try:
        return check_name(text)
    except RenderError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def load_experiment(path: Path, name: str | None = None):
    """The one valid Experiment of ``path`` (``name`` picks among several)."""
    from pipeline.katib.manifest import Manifest, ManifestError, load_documents
    from pipeline.validation import validate

    try:
        documents = load_documents(path)
    except ManifestError as exc:
        raise UsageError(str(exc)) from None
    if name:
        documents = [d for d in documents if isinstance(d[1].get("metadata"), dict)
                     and d[1]["metadata"].get("name") == name]
    if len(documents) != 1:
        raise UsageError(f"{path}: {len(documents)} Experiments match; pick one with --name")
    source, raw = documents[0]
    experiment, problems = validate(source, raw)
    if problems:
        raise UsageError("\n".join(f"{source}: {p}" for p in problems))
    return Manifest(source, raw, experiment)


class Progress:
    """One live line on a terminal; one line per change in a log."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last = ""
        self.last_done = -1

    def __call__(self, p: dict[str, Any]) -> None:
        total = p["total"] or "?"
        width = 24
        filled = int(width * p["done"] / p["total"]) if p["total"] else 0
        best = "-" if p["best"] is None else f"{p['best']:.4f}"
        eta = "-" if p["eta"] is None else _clock(p["eta"])
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {p['done']}/{total} done, "
                f"{p['running']} running, {p['failed']} failed | best {best} | "
                f"{_clock(p['elapsed'])} elapsed, ETA {eta}")
        if line == self.last or (not self.tty and p["done"] == self.last_done):
            return
        self.last, self.last_done = line, p["done"]
        if self.tty:
            sys.stderr.write("\r" + line.ljust(100))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def mlflow_command(args: str) -> str:
    """``mlflow ARGS`` as the user can type it: ``make run`` does not activate the virtual
    environment, so its ``bin`` (``mlflow``, and the ``uvicorn`` a model server runs) is put on
    PATH when it is not there."""
    bin_dir = Path(sys.executable).parent
    found = shutil.which("mlflow")
    prefix = "" if found and Path(found).parent == bin_dir else f"PATH={bin_dir}:$PATH "
    return f"{prefix}mlflow {args}"


LOCAL_UI = "http://127.0.0.1:5000"  # where `mlflow ui` serves by default
# MLflow 3's UI opens an experiment in its GenAI view (traces, "Evaluation runs") unless the
# URL asks for the model-training one.
TRAINING_VIEW = "?workflowType=machine_learning"


def experiment_url(base: str, experiment_id: str) -> str:
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}{TRAINING_VIEW}"


def review_command(uri: str, experiment: str | None = None) -> str:
    """How to look at ``experiment``'s runs: its page in the UI, in the model-training view
    (for a local store: the ``mlflow ui`` to start first)."""
    found = None
    if experiment:
        from mlflow import MlflowClient

        with contextlib.suppress(Exception):  # a hint: never fail the command for it
            found = MlflowClient(uri).get_experiment_by_name(experiment)
    local = not uri.startswith(("http://", "https://"))
    base = LOCAL_UI if local else uri
    page = experiment_url(base, found.experiment_id) if found else f"{base}/{TRAINING_VIEW}"
    if local:
        return mlflow_command(f"ui --backend-store-uri {uri}") + f", then open {page}"
    return page


def mlflow_retry_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mlflow-retry-seconds", type=number(0, 86400), default=20.0,
                   metavar="SECONDS",
                   help="how long to wait for an unreachable MLflow server before giving up "
                   "with exit code 4 (default 20)")


def katib_client(args: argparse.Namespace):
    from pipeline.cluster.client import KatibClient

    return KatibClient(namespace=args.namespace, kubeconfig=args.kubeconfig,
                       context=args.context)


def tracking_uri(args: argparse.Namespace) -> str:
    from trial_image.contract import default_tracking_uri

    return args.tracking_uri or default_tracking_uri()


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def for_cluster(manifest: Any, client: Any, allow_custom: bool) -> None:
    """UsageError unless Katib can run the manifest's algorithm and early stopping: its own, or
    nasflow's when the cluster's katib-config registers them (or ``--allow-custom-algorithms``
    says so)."""
    from pipeline.validation import katib_limits, nasflow_services

    limits = katib_limits(manifest.experiment)
    if limits:
        raise UsageError(f"{manifest.source}: cannot run on Katib: {'; '.join(limits)}")
    needed = nasflow_services(manifest.experiment)
    if not needed or allow_custom:
        return
    listed = client.katib_algorithms()
    unsupported = [why for name, why in needed.items() if listed is None or name not in listed]
    if not unsupported:
        return
    seen = "the cluster's katib-config does not list it" if listed is not None else \
        "the cluster's katib-config could not be read"
    raise UsageError(f"{manifest.source}: cannot run on Katib: {'; '.join(unsupported)}; {seen} "
                     "(pass --allow-custom-algorithms if it is registered, or run it locally "
                     "with `nasflow run`)")


def local_run(args: argparse.Namespace, read: Callable[[Path, str], T]) -> T | None:
    """What ``read`` finds of the local run (``--workdir``) when ``--source`` allows it and
    there is one; None: the experiment is Katib's."""
    if args.source in ("auto", "local"):
        with contextlib.suppress(FileNotFoundError):
            return read(args.workdir, args.experiment)
        if args.source == "local":
            raise UsageError(f"no local run of {args.experiment!r} in {args.workdir}")
    return None


def custom_algorithms_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-custom-algorithms", action="store_true",
                   help="submit nasflow's own algorithms (evolution, pareto-evolution, nsga2) "
                   "without reading katib-config: the cluster serves them (manifests/suggestion)")


def cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--namespace", "-n", help="default: the kubeconfig context's, or the "
                   "service account's in a pod")
    p.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG") or None)
    p.add_argument("--context", help="kubeconfig context")
