"""``python -m trial_image darts``: the whole DARTS trial Katib's ``darts`` algorithm expects.

Search: per epoch, the bi-level steps, then Katib metric lines (Search-Validation-Accuracy,
Skip-Connections, Skip-Share, …), MLflow curves, the epoch's genotype, α as JSON and as a
heat-map PNG, and ``Best-Genotype=Genotype(...)`` for the epoch's α (the line Katib's
filter ``([\\w-]+)=(Genotype.*)`` reads, timestamped like every metric line; its latest value is
the final one). Then the derived network is trained through the genotype front end, reseeded so
that it is the model `python -m trial_image --genotype=... --seed=S` gives: the run ends with a
normal, registrable model, its validation accuracy (what darts-digits.yaml's objective compares
across searches, as the DARTS paper selects among its four) and its test accuracy.

Guard against the collapse to skip connections: :class:`~trial_image.darts.search.CollapseGuard`
(DARTS+ early stopping, ``max_skip_connections``). As in DARTS, the result is the genotype of the
final α (Katib's PyTorch trial keeps the epoch with the best super-net accuracy instead, which on
small data favours early epochs whose α has barely moved).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any

from trial_image import data as datasets
from trial_image import tags
from trial_image.darts.settings import parse_num_layers, parse_search_space, parse_settings
from trial_image.errors import InputError
from trial_image.trial_run import RunOptions, TrialRun, prepare_tensorflow


def halves(data: Any, batch_size: int, seed: int) -> tuple[Any, Any, int]:
    """The training split halved at random: (weight half, α half, batch size used).

    Whole batches only (a last, smaller batch would retrace the compiled steps); the batch
    shrinks to the half's size on tiny datasets.
    """
    parts = data.train.halves(seed)
    batch = min(batch_size, min(p.count for p in parts))
    weight_half, alpha_half = (p.batches(batch, seed + i, drop_remainder=True)
                               for i, p in enumerate(parts))
    return weight_half, alpha_half, batch


def run_darts(args: argparse.Namespace) -> int:
    from trial_image.frontends import genotype as genotypes
    from trial_image.spec import Frame, Training

    settings = parse_settings(args.algorithm_settings)
    primitives = parse_search_space(args.search_space)
    num_layers = parse_num_layers(args.num_layers)
    if datasets.is_table(args.dataset):
        raise InputError(f"DARTS searches convolutional cells for images; {args.dataset} is a "
                         "table: search its blocks with the hyperparameter front end")
    data = datasets.DataRequest.of(args).load()
    prepare_tensorflow(args.seed)

    from trial_image.darts.heatmap import alpha_heatmap
    from trial_image.darts.search import BilevelSearch, CollapseGuard, skip_share
    from trial_image.darts.supernet import SupernetShape, build_supernet

    shape = SupernetShape(primitives, settings.num_nodes)
    supernet = build_supernet(shape, input_shape=data.input_shape, num_classes=data.num_classes,
                              input_scale=data.scale, num_layers=num_layers,
                              init_channels=settings.init_channels,
                              stem_multiplier=settings.stem_multiplier)
    search = BilevelSearch(supernet, shape, settings, args.seed)
    weight_half, alpha_half, batch = halves(data, settings.batch_size, args.seed)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if batch < settings.batch_size:
        log(f"batch_size {settings.batch_size} > half of the training split: using {batch}")
    raw = {k: v for k, v in vars(args).items() if v is not None and k != "metrics_file"}
    with TrialRun(RunOptions.of(args), data) as trial:
        trial.start(
            {tags.FRONTEND: "darts", tags.SEARCH_SPACE: ",".join(primitives)},
            {**{k: str(v) for k, v in dataclasses.asdict(settings).items()},
             "num_layers": num_layers, "supernet_parameter_count": supernet.count_params(),
             "dataset": args.dataset, "seed": args.seed, "epochs": args.epochs},
            {"darts_settings.json": dataclasses.asdict(settings),
             "trial_parameters.json": raw})
        started = time.perf_counter()
        guard = CollapseGuard(settings.max_skip_connections, settings.warmup_epochs)
        accuracies = []
        for epoch in range(settings.num_epochs):
            result = search.epoch(epoch, weight_half, alpha_half, data.validation, log)
            accuracies.append(result.validation_accuracy)
            genotype = search.genotype()
            skips, share = skip_share(genotype)
            text = genotypes.format_genotype(genotype)
            trial.report(epoch, {
                "Search-Train-Loss": result.train_loss,
                "Search-Train-Accuracy": result.train_accuracy,
                "Search-Validation-Accuracy": result.validation_accuracy,
                "Search-Learning-Rate": result.learning_rate,
                "Skip-Connections": float(skips), "Skip-Share": share})
            probabilities = search.probabilities()
            tag = f"darts/epoch_{epoch + 1:03d}"
            trial.tracker.log_artifacts(
                {f"{tag}_genotype.txt": text,
                 f"{tag}_alphas.json": json.dumps(
                     {"primitives": list(primitives),
                      **{k: v.round(5).tolist() for k, v in probabilities.items()}})},
                {f"{tag}_alphas.png": alpha_heatmap(
                    probabilities, shape, f"epoch {epoch + 1}: {text[:90]}")})
            if not guard.step(epoch, genotype):
                log(f"stopping the search ({guard.reason}); keeping epoch "
                    f"{guard.kept[0] + 1}'s genotype")
                break
            trial.reporter.report({"Best-Genotype": text})
        assert guard.kept is not None  # num_epochs >= 1
        kept_epoch, kept_genotype = guard.kept
        best_text = genotypes.format_genotype(kept_genotype)
        best_skips, best_share = skip_share(kept_genotype)
        log(f"search: {guard.reason}; genotype of epoch {kept_epoch + 1} (super-net validation "
            f"accuracy {accuracies[kept_epoch]:.4f}), {best_skips} skip connection(s): "
            f"{best_text}")
        spec = genotypes.to_spec(
            best_text, num_layers=num_layers, init_channels=settings.init_channels,
            stem_multiplier=settings.stem_multiplier,
            frame=Frame(input_shape=data.input_shape, num_classes=data.num_classes,
                        input_scale=data.scale, training=Training.of(args)))
        trial.tracker.set_tags({tags.CANDIDATE_ID: spec.candidate_id,
                                tags.GENOTYPE: best_text[:5000]})
        trial.tracker.log_artifacts({"darts/best_genotype.txt": best_text,
                                     "candidate_spec.json": json.dumps(spec.to_dict())}, {})
        # not from wherever the search left the random state: as a fresh --genotype trial
        prepare_tensorflow(args.seed)
        trial.train_candidate(spec, extra_metrics={
            "Search-Validation-Accuracy": accuracies[kept_epoch],
            "Search-Epochs": float(epoch + 1),
            "Search-Seconds": time.perf_counter() - started,
            "Genotype-Skip-Connections": float(best_skips), "Genotype-Skip-Share": best_share})
    return 0
