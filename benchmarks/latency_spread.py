"""Is batch-1 CPU latency stable enough to rank candidates? Its run-to-run spread against the
deterministic proxies (parameters, multiply-adds), on candidates of the ENAS digits space.

Samples ``--candidates`` architectures from ``manifests/experiments/enas-digits.yaml``, builds
each, and measures ``Inference-Latency-Ms`` (the trial's measure: median of 50 forward passes)
``--rounds`` times, each round in a fresh order. Prints each candidate's spread (max/min and the
coefficient of variation over rounds), how often two rounds disagree on which of two candidates
is faster, and the rank correlation of latency with multiply-adds and parameters.

    .venv/bin/python benchmarks/latency_spread.py [--candidates 12] [--rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from pipeline.cli.common import load_experiment
    from pipeline.katib.search_space import Space
    from trial_image import data as datasets
    from trial_image.builder import build_model, multiply_adds
    from trial_image.frontends import enas
    from trial_image.spec import Frame
    from trial_image.training import inference_latency_ms, quiet_keras

    quiet_keras()
    manifest = load_experiment(ROOT / "manifests/experiments/enas-digits.yaml")
    space = Space.of(manifest.experiment.spec)
    data = datasets.load("digits")
    frame = Frame(data.input_shape, data.num_classes, data.scale)
    models = []
    for i in range(args.candidates):
        a = space.sample(np.random.default_rng(i))
        models.append(build_model(enas.to_spec(a["architecture"], a["nn_config"], frame=frame)))
    latency = [[0.0] * args.rounds for _ in models]
    for r in range(args.rounds):
        order = np.random.default_rng(100 + r).permutation(len(models))
        for i in order:
            latency[i][r] = inference_latency_ms(models[i], data.train.x[:1])
    madds = [multiply_adds(m) for m in models]
    params = [m.count_params() for m in models]
    print(f"{'candidate':>9} {'MAdds':>9} {'params':>7}  latency ms per round")
    for i in range(len(models)):
        print(f"{i:>9} {madds[i]:>9} {params[i]:>7}  " + " ".join(f"{x:.3f}" for x in latency[i]))
    spreads = [max(row) / min(row) for row in latency]
    cvs = [statistics.stdev(row) / statistics.fmean(row) for row in latency]
    pairs = list(itertools.combinations(range(len(models)), 2))
    flips = []
    for r1, r2 in itertools.combinations(range(args.rounds), 2):
        flips.append(sum((latency[i][r1] < latency[j][r1]) != (latency[i][r2] < latency[j][r2])
                         for i, j in pairs) / len(pairs))
    medians = [statistics.median(row) for row in latency]
    print(f"\nrun-to-run spread of one candidate's latency: max/min median "
          f"{statistics.median(spreads):.2f}x, worst {max(spreads):.2f}x; coefficient of "
          f"variation median {statistics.median(cvs):.1%}, worst {max(cvs):.1%}")
    print(f"pairs of candidates two rounds order differently: {statistics.fmean(flips):.1%} "
          f"(of {len(pairs)} pairs; multiply-adds and parameters: 0 %, deterministic)")
    print(f"latency range across candidates: {min(medians):.3f}-{max(medians):.3f} ms")
    print(f"Spearman rank correlation of median latency with multiply-adds "
          f"{spearman(medians, madds):.2f}, with parameters {spearman(medians, params):.2f}")


if __name__ == "__main__":
    main()
