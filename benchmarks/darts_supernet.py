"""DARTS on digits: what the super-net costs, and whether its genotype is worth it.

1. One super-net epoch (bi-level: a w step on the w half and an α step on the α half per batch)
   vs one epoch of the largest single candidate of the same space (every edge the primitive
   with the most parameters) on the whole training split, both after a warm-up epoch (the
   first traces the compiled steps, reported apart). Each side runs in its own process, which
   reports its peak memory (VmHWM). Target: ratio <= 3.
2. The genotype DARTS derives (darts-digits.yaml's settings) vs random genotypes of the same
   space, each trained with the trial image's genotype front end for the same epochs and seeds.

    .venv/bin/python benchmarks/darts_supernet.py [--random 5] [--epochs 15] [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MANIFEST = ROOT / "manifests" / "experiments" / "darts-digits.yaml"


def manifest_values() -> dict:
    """Katib's three DARTS values for darts-digits.yaml, as the engine hands them out."""
    from pipeline.cli import load_experiment
    from pipeline.suggestion import create
    from pipeline.suggestion.base import SearchContext

    experiment = load_experiment(MANIFEST).experiment
    settings = {s.name: s.value for s in experiment.spec.algorithm.algorithm_settings or []}
    return create(SearchContext(experiment, settings, seed=0)).suggest(0, [])


def peak_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def supernet_side(epochs: int) -> dict:
    from trial_image import data as datasets
    from trial_image.darts.run import halves
    from trial_image.darts.search import BilevelSearch
    from trial_image.darts.settings import parse_num_layers, parse_search_space, parse_settings
    from trial_image.darts.supernet import SupernetShape, build_supernet
    from trial_image.trial_run import prepare_tensorflow

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    primitives = parse_search_space(values["search-space"])
    data = datasets.load("digits")
    prepare_tensorflow(0)
    shape = SupernetShape(primitives, settings.num_nodes)
    layers = parse_num_layers(values["num-layers"])
    model = build_supernet(shape, input_shape=data.input_shape, num_classes=data.num_classes,
                           input_scale=data.scale, num_layers=layers,
                           init_channels=settings.init_channels,
                           stem_multiplier=settings.stem_multiplier)
    search = BilevelSearch(model, shape, settings, 0)
    weight_half, alpha_half, _ = halves(data, settings.batch_size, 0)
    times = []
    for epoch in range(epochs + 1):
        start = time.perf_counter()
        search.epoch(epoch, weight_half, alpha_half, (data.x_val, data.y_val))
        times.append(time.perf_counter() - start)
    return {"first_epoch_s": times[0], "epoch_s": sum(times[1:]) / epochs,
            "parameters": model.count_params(), "peak_mib": peak_mib()}


def largest_genotype() -> tuple[str, int]:
    """Every edge the primitive whose all-that genotype has the most parameters."""
    from trial_image.darts.settings import parse_search_space, parse_settings
    from trial_image.frontends.genotype import format_genotype

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    primitives = [p for p in parse_search_space(values["search-space"]) if p != "none"]
    best = None
    for primitive in primitives:
        cell = [[(primitive, node), (primitive, node + 1)] for node in range(settings.num_nodes)]
        text = format_genotype({"normal": cell, "normal_concat": range(2, 2 + len(cell)),
                                "reduce": cell, "reduce_concat": range(2, 2 + len(cell))})
        count = candidate_model(text)[1].count_params()
        if best is None or count > best[1]:
            best = (text, count)
    return best


def candidate_model(text: str):
    from trial_image import data as datasets
    from trial_image.builder import build_model
    from trial_image.darts.settings import parse_num_layers, parse_settings
    from trial_image.frontends.genotype import to_spec
    from trial_image.spec import Head, Training

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    data = datasets.load("digits")
    spec = to_spec(text, num_layers=parse_num_layers(values["num-layers"]),
                   init_channels=settings.init_channels,
                   stem_multiplier=settings.stem_multiplier, input_shape=data.input_shape,
                   num_classes=data.num_classes, input_scale=data.scale,
                   training=Training(batch_size=settings.batch_size, epochs=1), head=Head())
    return spec, build_model(spec), data


def candidate_side(epochs: int) -> dict:
    from trial_image.training import compile_model, train
    from trial_image.trial_run import prepare_tensorflow

    prepare_tensorflow(0)
    text, _ = largest_genotype()
    spec, model, data = candidate_model(text)
    compile_model(model, spec.training)
    times = []
    for _ in range(epochs + 1):
        start = time.perf_counter()
        train(model, data, spec.training, seed=0, patience=99, time_budget=None,
              on_epoch=lambda e, m: None)
        times.append(time.perf_counter() - start)
    return {"first_epoch_s": times[0], "epoch_s": sum(times[1:]) / epochs,
            "parameters": model.count_params(), "peak_mib": peak_mib(), "genotype": text}


def side(name: str, epochs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--side", name, "--timed-epochs",
                          str(epochs)], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def trial(args: list[str], workdir: Path) -> dict:
    """One `python -m trial_image` run; its final metric lines."""
    out = subprocess.run([sys.executable, "-m", "trial_image", *args], cwd=workdir,
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "MLFLOW_TRACKING_URI":
                              f"sqlite:///{workdir / 'mlflow.db'}", "PYTHONPATH": str(ROOT)})
    found = dict(re.findall(r"^\S+ ([\w-]+)=(.*)$", out.stdout, re.M))
    return found


def random_genotype(primitives: list[str], nodes: int, rng: random.Random) -> str:
    from trial_image.frontends.genotype import format_genotype

    def cell():
        return [[(rng.choice(primitives), source) for source in rng.sample(range(node + 2), 2)]
                for node in range(nodes)]
    return format_genotype({"normal": cell(), "normal_concat": range(2, 2 + nodes),
                            "reduce": cell(), "reduce_concat": range(2, 2 + nodes)})


def quality(randoms: int, epochs: int, seeds: int) -> dict:
    """Test accuracy of the DARTS genotype and of random ones, each trained in a fresh
    `--genotype` trial per seed (the DARTS trial's own training is reported apart: it follows
    the search in the same process, so its random state differs)."""
    from trial_image.darts.settings import parse_search_space, parse_settings

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    primitives = [p for p in parse_search_space(values["search-space"]) if p != "none"]
    shape = [f"--num-layers={values['num-layers']}",
             f"--init-channels={settings.init_channels}",
             f"--stem-multiplier={settings.stem_multiplier}"]
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        darts = trial(["darts", f"--algorithm-settings={values['algorithm-settings']}",
                       f"--search-space={values['search-space']}",
                       f"--num-layers={values['num-layers']}", "--dataset=digits",
                       f"--epochs={epochs}", "--seed=0"], Path(tmp))
        darts_seconds = time.perf_counter() - start
        rng = random.Random(0)
        candidates = [darts["Best-Genotype"]] + [
            random_genotype(primitives, settings.num_nodes, rng) for _ in range(randoms)]
        accuracy = [[float(trial([f"--genotype={g}", *shape, "--dataset=digits",
                                  f"--epochs={epochs}", f"--seed={seed}"],
                                 Path(tmp))["Test-Accuracy"]) for seed in range(seeds)]
                    for g in candidates]
    return {"darts_trial_test_accuracy": float(darts["Test-Accuracy"]),
            "darts_trial_seconds": darts_seconds, "genotype": darts["Best-Genotype"],
            "darts": accuracy[0], "random": accuracy[1:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("supernet", "candidate"))
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument("--random", type=int, default=5, help="random genotypes to compare")
    parser.add_argument("--epochs", type=int, default=15, help="training of each genotype")
    parser.add_argument("--seeds", type=int, default=2, help="training seeds per genotype")
    args = parser.parse_args()
    if args.side:
        result = (supernet_side if args.side == "supernet" else candidate_side)(
            args.timed_epochs)
        print(json.dumps(result))
        return
    supernet, candidate = side("supernet", args.timed_epochs), side("candidate",
                                                                      args.timed_epochs)
    print(f"largest candidate: {candidate['genotype']}")
    print(f"{'':<22}{'epoch (s)':>10}{'1st epoch (s)':>15}{'parameters':>12}{'peak MiB':>10}")
    for name, r in (("super-net", supernet), ("largest candidate", candidate)):
        print(f"{name:<22}{r['epoch_s']:>10.3f}{r['first_epoch_s']:>15.2f}"
              f"{r['parameters']:>12}{r['peak_mib']:>10.0f}")
    print(f"epoch ratio super-net / largest candidate: "
          f"{supernet['epoch_s'] / candidate['epoch_s']:.2f} (target <= 3)")
    if args.random:
        q = quality(args.random, args.epochs, args.seeds)
        mean = sum(q["darts"]) / len(q["darts"])
        random_means = [sum(r) / len(r) for r in q["random"]]
        print(f"DARTS trial ({q['darts_trial_seconds']:.0f} s search + training): test accuracy "
              f"{q['darts_trial_test_accuracy']:.4f}; genotype {q['genotype']}")
        print(f"each genotype trained {args.epochs} epochs, seeds 0..{args.seeds - 1}, test "
              "accuracy (mean over seeds):")
        print(f"  DARTS genotype      {mean:.4f}  {[round(a, 4) for a in q['darts']]}")
        for i, (m, r) in enumerate(zip(random_means, q["random"], strict=True)):
            print(f"  random genotype {i + 1}   {m:.4f}  {[round(a, 4) for a in r]}")
        overall = sum(random_means) / len(random_means)
        print(f"DARTS {mean:.4f} vs random genotypes mean {overall:.4f} (best "
              f"{max(random_means):.4f}, worst {min(random_means):.4f})")


if __name__ == "__main__":
    main()
