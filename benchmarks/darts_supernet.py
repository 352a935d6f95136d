"""DARTS on digits: what the super-net costs, and whether its genotype is worth it.

1. One super-net epoch (bi-level: a w step on the w half and an α step on the α half per batch)
   vs one epoch of the largest single candidate of the same space (every edge the primitive
   with the most parameters) on the whole training split, both after a warm-up epoch (the
   first traces the compiled steps, reported apart). Each side runs in its own process, which
   reports its peak memory (VmHWM). Target: ratio <= 3.
2. Test accuracy of DARTS trials (darts-digits.yaml's settings: the search, then the derived
   network trained with the trial's seed) vs random genotypes of the same space trained for
   the same epochs through the genotype front end, one seed each. Two readings: a single
   trial, and darts-digits.yaml's protocol (the DARTS paper's: of `--pick` searches keep the
   one whose derived network validates best) against random search with the same selection,
   both averaged exactly over every `--pick`-subset of the runs.

    .venv/bin/python benchmarks/darts_supernet.py [--searches 8] [--random 10] [--pick 4]
"""

from __future__ import annotations

import argparse
import functools
import itertools
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


@functools.cache
def manifest_values() -> dict:
    """Katib's three DARTS values for darts-digits.yaml, as the engine hands them out."""
    from pipeline.cli.common import load_experiment
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
        search.epoch(epoch, weight_half, alpha_half, data.validation)
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
    from trial_image.spec import Frame, Training

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    data = datasets.load("digits")
    spec = to_spec(text, num_layers=parse_num_layers(values["num-layers"]),
                   init_channels=settings.init_channels,
                   stem_multiplier=settings.stem_multiplier,
                   frame=Frame(data.input_shape, data.num_classes, data.scale,
                               training=Training(batch_size=settings.batch_size, epochs=1)))
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
              on_epoch=lambda e, m, _: None)
        times.append(time.perf_counter() - start)
    return {"first_epoch_s": times[0], "epoch_s": sum(times[1:]) / epochs,
            "parameters": model.count_params(), "peak_mib": peak_mib(), "genotype": text}


def side(name: str, epochs: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--side", name, "--timed-epochs",
                          str(epochs)], capture_output=True, text=True, check=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def trial(args: list[str], workdir: Path) -> dict[str, list[str]]:
    """One `python -m trial_image` run; every value of each metric line, in order."""
    out = subprocess.run([sys.executable, "-m", "trial_image", *args], cwd=workdir,
                         capture_output=True, text=True, check=True,
                         env={**os.environ, "MLFLOW_TRACKING_URI":
                              f"sqlite:///{workdir / 'mlflow.db'}", "PYTHONPATH": str(ROOT)})
    found: dict[str, list[str]] = {}
    for name, value in re.findall(r"^\S+ ([\w-]+)=(.*)$", out.stdout, re.M):
        found.setdefault(name, []).append(value)
    return found


def outcome(metrics: dict[str, list[str]]) -> tuple[float, float]:
    """(validation accuracy of the kept weights, i.e. the best epoch's; test accuracy)."""
    return (max(map(float, metrics["Validation-Accuracy"])),
            float(metrics["Test-Accuracy"][-1]))


def best_of(results: list[tuple[float, float]], pick: int) -> float:
    """Test accuracy of the best-validating of ``pick`` runs, averaged over every subset."""
    subsets = list(itertools.combinations(results, pick))
    return sum(max(subset, key=lambda r: r[0])[1] for subset in subsets) / len(subsets)


def random_genotype(primitives: list[str], nodes: int, rng: random.Random) -> str:
    from trial_image.frontends.genotype import format_genotype

    def cell():
        return [[(rng.choice(primitives), source) for source in rng.sample(range(node + 2), 2)]
                for node in range(nodes)]
    return format_genotype({"normal": cell(), "normal_concat": range(2, 2 + nodes),
                            "reduce": cell(), "reduce_concat": range(2, 2 + nodes)})


def quality(searches: int, randoms: int, epochs: int) -> dict:
    from trial_image.darts.settings import parse_search_space, parse_settings

    values = manifest_values()
    settings = parse_settings(values["algorithm-settings"])
    primitives = [p for p in parse_search_space(values["search-space"]) if p != "none"]
    shape = [f"--num-layers={values['num-layers']}",
             f"--init-channels={settings.init_channels}",
             f"--stem-multiplier={settings.stem_multiplier}"]
    darts, genotypes, seconds = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(searches):
            start = time.perf_counter()
            metrics = trial(["darts", f"--algorithm-settings={values['algorithm-settings']}",
                             f"--search-space={values['search-space']}",
                             f"--num-layers={values['num-layers']}", "--dataset=digits",
                             f"--epochs={epochs}", f"--seed={seed}"], Path(tmp))
            seconds.append(time.perf_counter() - start)
            darts.append(outcome(metrics))
            genotypes.append(metrics["Best-Genotype"][-1])
        rng = random.Random(0)
        randomly = []
        for seed in range(randoms):
            genotype = random_genotype(primitives, settings.num_nodes, rng)
            randomly.append(outcome(trial([f"--genotype={genotype}", *shape, "--dataset=digits",
                                           f"--epochs={epochs}", f"--seed={seed}"], Path(tmp))))
    return {"darts": darts, "random": randomly, "genotypes": genotypes,
            "darts_trial_seconds": sum(seconds) / len(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=("supernet", "candidate"))
    parser.add_argument("--timed-epochs", type=int, default=3)
    parser.add_argument("--searches", type=int, default=8, help="DARTS trials (0: none)")
    parser.add_argument("--random", type=int, default=10, help="random genotypes to compare")
    parser.add_argument("--pick", type=int, default=4,
                        help="searches per experiment (darts-digits.yaml's maxTrialCount)")
    parser.add_argument("--epochs", type=int, default=15, help="training of each genotype")
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
    if args.searches:
        q = quality(args.searches, args.random, args.epochs)
        print(f"DARTS trial: {q['darts_trial_seconds']:.0f} s (search + derived network "
              f"{args.epochs} epochs); random genotypes trained {args.epochs} epochs")
        for name, runs in (("DARTS search seed", q["darts"]), ("random genotype", q["random"])):
            for i, (validation, test) in enumerate(runs):
                print(f"  {name} {i}: validation {validation:.4f}, test {test:.4f}")
        for i, genotype in enumerate(q["genotypes"]):
            print(f"  genotype of search seed {i}: {genotype}")
        darts_mean = sum(t for _, t in q["darts"]) / len(q["darts"])
        random_mean = sum(t for _, t in q["random"]) / len(q["random"])
        print(f"one trial: DARTS test accuracy {darts_mean:.4f} (mean of {len(q['darts'])}) "
              f"vs random genotype {random_mean:.4f} (mean of {len(q['random'])})")
        print(f"best validation of {args.pick}: DARTS {best_of(q['darts'], args.pick):.4f} vs "
              f"random search {best_of(q['random'], args.pick):.4f} (test accuracy, exact mean "
              f"over every {args.pick}-subset)")


if __name__ == "__main__":
    main()
