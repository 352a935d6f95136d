"""``python -m trial_image``: train one candidate from Katib's parameters.

Exit codes: 0 trained and recorded; 2 bad input (flags, architecture, dataset); 3 training
diverged (NaN loss); 4 MLflow unreachable or the model could not be stored; 143 terminated
(SIGTERM: Katib deleting the trial, or the local engine stopping). Katib treats any non-zero code
as a failed trial.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import zlib
from pathlib import Path

from trial_image import tags
from trial_image.errors import InputError, TrialError
from trial_image.numbers import number
from trial_image.optimization_job import with_environment
from trial_image.paths import writable_file
from trial_image.tasks import TASKS

PER_BLOCK = re.compile(r"^--(filters|kernel-size|pooling|units|block)-(\d+)(?:=(.*))?$", re.S)


# Upper bounds of the flags: far above any sensible candidate, far below what exhausts memory.
MAX_EPOCHS = 100_000
MAX_WIDTH = 65_536  # filters, units
MAX_LENGTH = 100_000  # a text's tokens, a series' window
MAX_IMAGE_SIDE = 4096


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def seed(value: str) -> int:
    """A number, or any text such as the trial name (hashed, CRC-32): the repeated trials of a
    Katib DARTS experiment get identical parameters, and a seed from the trial name makes each
    search start elsewhere while staying reproducible."""
    text = value.strip()
    return int(text) % 2**31 if re.fullmatch(r"[0-9]{1,40}", text) else \
        zlib.crc32(text.encode()) & 0x7FFFFFFF


def _image_size(value: str) -> tuple[int, int]:
    match = re.fullmatch(r"([0-9]{1,5})[x,]([0-9]{1,5})", value.strip())
    if not match or not all(1 <= int(side) <= MAX_IMAGE_SIDE for side in match.groups()):
        raise argparse.ArgumentTypeError(f"expected HxW like 32x32, each side 1 to "
                                         f"{MAX_IMAGE_SIDE}, got {value[:40]!r}")
    return int(match[1]), int(match[2])


def _column_types(value: str) -> dict[str, str]:
    from trial_image.data.tables import KINDS

    kinds = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, eq, kind = item.rpartition("=")
        if not eq or not name or kind not in KINDS:
            raise argparse.ArgumentTypeError(
                f"expected NAME={', '.join(KINDS[:-1])} or {KINDS[-1]}, got {item!r}")
        kinds[name] = kind
    return kinds


def _data_flags(p: argparse.ArgumentParser) -> None:
    from trial_image.data import CACHES_HELP, DATASETS_HELP, DataRequest

    d = DataRequest()
    g = p.add_argument_group("data")
    g.add_argument("--dataset", default=d.dataset, help=DATASETS_HELP)
    g.add_argument("--validation-split", type=number(0, 1, low_open=True, high_open=True),
                   default=d.validation_split)
    g.add_argument("--image-size", type=_image_size, default=d.image_size,
                   help="HxW images are resized to, for dir: and tfrecord: (default 32x32)")
    g.add_argument("--data-cache", default=None, metavar="memory|FOLDER", help=CACHES_HELP)
    g.add_argument("--max-unreadable", type=number(0, 1), default=0.01, metavar="SHARE",
                   help="streamed images (dir:, tfrecord:) that cannot be read are skipped, "
                   "counted and named; above this share of a split the data is refused, exit "
                   "2 (default 0.01)")
    g = p.add_argument_group("tables, texts and series (csv:, parquet:, series:, the bundled "
                             "ones)")
    g.add_argument("--target", default=None, help="the column to predict (bundled: 'target')")
    g.add_argument("--task", choices=tuple(TASKS), default=None,
                   help="default: inferred from the target (text or few integers: "
                   "classification), and said")
    g.add_argument("--column-types", type=_column_types, default=None,
                   metavar="NAME=KIND,...", help="numeric, categorical, text or ignore, "
                   "overriding the inferred kind of these columns")
    g.add_argument("--lookback", type=number(1, MAX_LENGTH, integer=True),
                   default=d.window.lookback,
                   help="a series: values a window holds")
    g.add_argument("--horizon", type=number(1, MAX_LENGTH, integer=True),
                   default=d.window.horizon,
                   help="a series: how many steps after its window a forecast is for")


def _training_flags(p: argparse.ArgumentParser, title: str) -> None:
    from trial_image.spec import AUGMENTATIONS, LR_SCHEDULES, OPTIMIZERS

    g = p.add_argument_group(title)
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam")
    # finite and positive; a huge one diverges, which is a training failure (exit 3)
    g.add_argument("--learning-rate", "--lr", type=number(0, 1e15, low_open=True), default=1e-3)
    g.add_argument("--momentum", type=number(0, 1), default=0.9, help="for sgd and rmsprop")
    g.add_argument("--weight-decay", type=number(0, 1), default=0.0,
                   help="decoupled weight decay (Adam with one is AdamW; default 0)")
    g.add_argument("--batch-size", type=number(1, 65536, integer=True), default=64)
    g.add_argument("--epochs", "--num-epochs", type=number(1, MAX_EPOCHS, integer=True),
                   default=10)
    g.add_argument("--patience", type=number(0, MAX_EPOCHS, integer=True), default=5,
                   help="early stopping on validation accuracy (best weights restored)")
    g.add_argument("--time-budget", type=number(0, 30 * 86400, low_open=True), default=None,
                   metavar="SECONDS",
                   help="stop training after this many seconds")
    g.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="cosine: from the learning rate down to 0 over all epochs")
    g.add_argument("--augment", choices=AUGMENTATIONS, default="none",
                   help="light: random shifts of training images by up to 1/8 of their size")
    g.add_argument("--seed", type=seed, default=0,
                   help="a number or any text, e.g. the trial name; same seed, same metrics "
                   "on CPU")


def _reporting_flags(p: argparse.ArgumentParser, search_space_tag: bool) -> None:
    from trial_image.katib_metrics import FORMATS

    g = p.add_argument_group("Katib metrics")
    g.add_argument("--metrics-file", type=writable_file,
                   help="also write metrics here (File collector)")
    g.add_argument("--metrics-format", choices=FORMATS, default="text")
    g = p.add_argument_group("MLflow (MLFLOW_TRACKING_URI, MLFLOW_PARENT_RUN_ID from the env)")
    g.add_argument("--experiment-name", default=None,
                   help="MLflow experiment = Katib experiment (default 'nasflow')")
    g.add_argument("--trial-name", default=None, help="default $KATIB_TRIAL_NAME")
    g.add_argument("--namespace", default=None, help="Katib namespace, for the run's tags")
    if search_space_tag:
        g.add_argument("--search-space", default=None, help="tag nasflow.search_space")
    g.add_argument("--algorithm", default=None, help="tag nasflow.algorithm")
    g.add_argument("--mlflow-retry-seconds", type=number(0, 86400), default=120.0,
                   help="how long to retry an unreachable MLflow server (default 120)")


def _reward_flags(p: argparse.ArgumentParser) -> None:
    from trial_image.reward import COSTS

    g = p.add_argument_group("MnasNet reward (Reward = accuracy x (cost/target)^w, every epoch)")
    g.add_argument("--reward-target", type=number(0, 1e15, low_open=True), default=None,
                   metavar="T",
                   help="report Reward against this target cost (default: no Reward)")
    g.add_argument("--reward-cost", choices=COSTS, default="madds",
                   help="the cost: madds (multiply-adds, deterministic; default), parameters, "
                   "size (bytes of weights) or latency (batch-1 CPU ms, noisy on small models)")
    g.add_argument("--reward-alpha", type=number(-10, 10), default=-0.07,
                   help="w when cost <= target (MnasNet soft: -0.07, hard: 0)")
    g.add_argument("--reward-beta", type=number(-10, 10), default=-0.07,
                   help="w when cost > target (MnasNet soft: -0.07, hard: -1)")


def _evaluation_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("final training (nasflow finalize)")
    g.add_argument("--role", choices=("trial", "selection", "final"), default="trial",
                   help="tag nasflow.role; final also logs the evaluation report and the "
                   "architecture diagram")
    g.add_argument("--source-trial", default=None, help="tag nasflow.source_trial")
    g.add_argument("--train-on", choices=("train", "train+validation"), default="train",
                   help="train+validation: no validation split, every epoch runs")
    g.add_argument("--skip-test", action="store_true",
                   help="do not load the test split (selection runs)")
    g.add_argument("--evaluate-model", default=None, metavar="URI",
                   help="also measure this registered model (models:/NAME@ALIAS) on the same "
                   "test split: Champion-Test-Accuracy")
    g.add_argument("--ensemble-of", default=None, metavar="RUN:COUNT,...",
                   help="instead of training a candidate: average these final runs' models "
                   "(weights: counts / their sum), measure and store the ensemble "
                   "(trial_image/ensemble.py)")


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False,
        epilog="Exit codes: 0 ok, 2 bad input, 3 training diverged, 4 MLflow failure, "
        "143 terminated.")


def build_parser() -> argparse.ArgumentParser:
    from trial_image.families import BLOCKS
    from trial_image.frontends.hyperparams import POOLINGS
    from trial_image.spec import LEVELS, NUMERIC_ENCODINGS, WIDE_PATHS

    p = _parser("python -m trial_image",
                "Train ONE Keras candidate from Katib trial parameters, report Katib metrics and "
                "log the run and model to MLflow. Flags accept '-' or '_' (--num_epochs == "
                "--num-epochs). `python -m trial_image darts --help`: the DARTS search.")
    _data_flags(p)
    _training_flags(p, "training")
    p.add_argument_group("checkpoints").add_argument(
        "--checkpoint-dir", type=Path, default=None, metavar="FOLDER",
        help="save weights and optimizer state here every epoch; a killed trial resumes after "
        "its last finished epoch, a folder PBT copied from another trial is trained on (a PVC "
        "path on a cluster)")
    g = p.add_argument_group("hyperparameter front end (default)")
    g.add_argument("--num-blocks", type=number(1, 64, integer=True), default=None,
                   help="default 2")
    g.add_argument("--filters", type=number(1, MAX_WIDTH, integer=True), default=None,
                   help="default 32; --filters-N per block")
    g.add_argument("--kernel-size", type=number(1, 31, integer=True), default=None,
                   help="3, 5 or 7 (default 3); --kernel-size-N per block")
    g.add_argument("--pooling", choices=POOLINGS, default=None,
                   help="after each block (default max); --pooling-N per block")
    g.add_argument("--batch-norm", type=_bool, default=None, help="default true")
    g.add_argument("--dense-units", type=number(0, MAX_WIDTH, integer=True), default=0,
                   help="hidden dense layer in the head")
    g.add_argument("--dropout", type=number(0, 1, high_open=True), default=0.0,
                   help="before the output layer")
    g.add_argument("--wide", choices=WIDE_PATHS, default="none",
                   help="a linear path beside the network, added to its output (wide & deep): "
                   "tables, texts, series: linear; series: decomposed (a linear map of the "
                   "window's trend and remainder, DLinear) or kernels (of MiniRocket's features "
                   "of the window); images have none")
    g.add_argument("--level", choices=LEVELS, default="global",
                   help="a series: scale windows by the training windows' mean and variance "
                   "(global, default) or read each relative to its last value and forecast the "
                   "change from it (last: follows a trend past the training values)")
    g = p.add_argument_group("hyperparameter front end, tables, texts and series (with "
                             "--num-blocks, --batch-norm, --kernel-size)")
    g.add_argument("--block", choices=BLOCKS, default=None,
                   help="tables: dense (default), residual, glu or attention; texts and series: "
                   "conv1d (default), rnn or attention; --block-N per block")
    g.add_argument("--units", type=number(1, MAX_WIDTH, integer=True), default=None,
                   help="width of dense, residual, glu, conv1d and rnn blocks (default 64); "
                   "--units-N")
    g.add_argument("--cell", choices=("gru", "lstm"), default="gru", help="rnn blocks' cell")
    g.add_argument("--bidirectional", type=_bool, default=False, help="rnn blocks both ways")
    g.add_argument("--sequence-length", type=number(1, MAX_LENGTH, integer=True), default=64,
                   help="a text's tokens read")
    g.add_argument("--vocabulary-size", type=number(1, 2_000_000, integer=True), default=10_000,
                   help="a text's most frequent words kept")
    g.add_argument("--block-dropout", type=number(0, 1, high_open=True), default=0.0,
                   help="inside each block")
    g.add_argument("--heads", type=number(1, 64, integer=True), default=2,
                   help="attention blocks' heads")
    g.add_argument("--key-dim", type=number(1, 1024, integer=True), default=8,
                   help="attention blocks' width per head")
    g.add_argument("--embedding-size", type=number(1, 1024, integer=True), default=8,
                   help="dimensions of each categorical column's embedding")
    g.add_argument("--numeric-encoding", choices=NUMERIC_ENCODINGS, default="scaled",
                   help="a table's numbers: scaled (default), or also piecewise-linear in bins")
    g = p.add_argument_group("Katib ENAS front end")
    g.add_argument("--architecture", help="Katib's ENAS 'architecture' string")
    g.add_argument("--nn-config", help="Katib's ENAS 'nn_config' string")
    g = p.add_argument_group("DARTS genotype front end")
    g.add_argument("--genotype", help="Genotype(normal=..., normal_concat=..., reduce=..., ...)")
    g.add_argument("--num-layers", type=number(1, 64, integer=True), default=3,
                   help="cells (default 3)")
    g.add_argument("--init-channels", type=number(1, 1024, integer=True), default=16)
    g.add_argument("--stem-multiplier", type=int, default=3)
    _reporting_flags(p, search_space_tag=True)
    _reward_flags(p)
    _evaluation_flags(p)
    return p


def build_darts_parser() -> argparse.ArgumentParser:
    p = _parser("python -m trial_image darts",
                "Katib's `darts` trial: the bi-level DARTS search over a weight-sharing "
                "super-net, printing Best-Genotype=Genotype(...) for Katib's collector, then "
                "training the derived network like any candidate (a registrable MLflow model).")
    g = p.add_argument_group("Katib's DARTS assignments")
    g.add_argument("--algorithm-settings", default="{}",
                   help="{'num_epochs': '1', ...}: Katib's settings (defaults: Katib's), plus "
                   "nasflow's 'unrolled' (second-order) and 'max_skip_connections'")
    g.add_argument("--search-space", required=True,
                   help="['separable_convolution_3x3', ...]; 'none' is added")
    g.add_argument("--num-layers", default="3", help="cells of the super-net")
    _data_flags(p)
    _training_flags(p, "training of the derived network (after the search)")
    _reporting_flags(p, search_space_tag=False)
    # a DARTS search trains its derived network itself: no final-training roles
    p.set_defaults(role="trial", evaluate_model=None)
    return p


def normalise_argv(argv: list[str]) -> tuple[list[str], dict[str, dict[int, str]]]:
    """Map ``--a_b`` to ``--a-b`` (Katib examples use both) and pull out per-block flags."""
    flags: list[str] = []
    per_block: dict[str, dict[int, str]] = {"filters": {}, "kernel-size": {}, "pooling": {},
                                            "units": {}, "block": {}}
    args = iter(argv)
    for token in args:
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            token = name.replace("_", "-") + eq + value
            match = PER_BLOCK.match(token)
            if match:
                value = match[3] if match[3] is not None else next(args, "")
                per_block[match[1]][int(match[2])] = value
                continue
        flags.append(token)
    return flags, per_block


def run(args: argparse.Namespace, per_block: dict[str, dict[int, str]]) -> int:
    from trial_image import distributed
    from trial_image.data import DataRequest
    from trial_image.frontends.dispatch import make_spec
    from trial_image.trial_run import RunOptions, TrialRun, prepare_tensorflow

    if args.skip_test and args.evaluate_model:
        raise InputError("--evaluate-model measures on the test split, which --skip-test leaves "
                         "out")
    workers = distributed.workers()
    strategy = None
    if workers is not None:
        for flag, value in (("--checkpoint-dir", args.checkpoint_dir),
                            ("--time-budget", args.time_budget)):
            if value is not None:
                raise InputError(f"{flag} is for one-process trials: this one has "
                                 f"{workers.count} workers (docs/trainjob.md)")
        strategy = distributed.strategy(workers)  # before TensorFlow runs anything
    chief = workers is None or workers.chief  # the only one that evaluates on the test split
    data = DataRequest.of(args).load(test=chief and not args.skip_test)
    if args.train_on == "train+validation":
        data = data.merged()
    if args.ensemble_of is not None:
        from trial_image import ensemble

        return ensemble.run(args, data)
    spec = make_spec(args, per_block, data)
    prepare_tensorflow(args.seed)
    from trial_image.builder import build_model

    model = build_model(spec, data.train)
    with TrialRun(RunOptions.of(args), data, workers, strategy) as trial:
        if not trial.chief:  # trains its share; the chief reports and logs the one trial
            trial.train_candidate(spec, model)
            return 0
        run_tags = {tags.FRONTEND: spec.source, tags.CANDIDATE_ID: spec.candidate_id,
                    tags.ROLE: args.role, tags.TASK: spec.task, tags.FAMILY: spec.family.name}
        if args.search_space:
            run_tags[tags.SEARCH_SPACE] = args.search_space
        if args.source_trial:
            run_tags[tags.SOURCE_TRIAL] = args.source_trial
        raw = {k: v for k, v in vars(args).items() if v is not None and k != "metrics_file"}
        raw.update({f"{flag}_{i}": v for flag, values in per_block.items()
                    for i, v in values.items()})
        params = {**{k: str(v) for k, v in raw.items()}, "candidate_id": spec.candidate_id,
                  "num_nodes": len(spec.nodes), "parameter_count": model.count_params(),
                  "splits": ",".join(s.name for s in data.splits)}
        plan = trial.checkpoints(spec)
        if plan is not None and plan.lineage:
            run_tags[tags.CHECKPOINT_LINEAGE] = ",".join(plan.lineage)
        trial.start(run_tags, params, {"candidate_spec.json": spec.to_dict(),
                                   "trial_parameters.json": raw}, plan.run_id if plan else "")
        trial.train_candidate(spec, model, plan=plan)
    return 0


def main(argv: list[str] | None = None) -> int:
    from trial_image.termination import end_with_parent

    end_with_parent()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["data"]:
        from trial_image.data.shard_writer import main as write_shards

        return write_shards(argv[1:])
    if argv[:1] == ["compress"]:
        from trial_image.compress.run import main as compress

        try:
            return compress(argv[1:])
        except TrialError as exc:
            print(f"compress failed: {exc}", file=sys.stderr)
            return exc.exit_code
    darts = bool(argv) and argv[0] == "darts"
    try:
        parser = build_darts_parser() if darts else build_parser()
        flags, per_block = normalise_argv(with_environment(argv[1:] if darts else argv, parser,
                                                           os.environ, PER_BLOCK))
        if darts:
            from trial_image import distributed
            from trial_image.darts.run import run_darts

            if distributed.workers() is not None:
                raise InputError("the DARTS search runs in one process: give its trial one node")
            return run_darts(parser.parse_args(flags))
        return run(parser.parse_args(flags), per_block)
    except TrialError as exc:
        print(f"trial failed: {exc}", file=sys.stderr)
        return exc.exit_code
