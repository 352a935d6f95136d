"""Compression of the digits champion: every variant measured with itself, in one run.

Runs the default story (``nasflow run --finalize --promote``, ENAS on digits) in a temporary
folder, then ``nasflow compress models:/enas-digits@champion`` with every variant, and prints
each variant's test accuracy (the LiteRT interpreter running the ``.tflite`` file), its size
against the float32 ``.tflite`` and its batch-1 latency against float32's (one interpreter
thread, median of 100). Then distillation against its baseline: the same student (the most
accurate search trial with at most half the teacher's parameters) trained for the same epochs
with and without the teacher, ``--seeds`` seeds each.

    .venv/bin/python benchmarks/compression.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        nasflow = [sys.executable, "-m", "pipeline"]
        subprocess.run([*nasflow, "run", "--finalize", "--promote", "--quiet", "--tracking-uri",
                        uri], cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL)
        done = subprocess.run([*nasflow, "compress", "models:/enas-digits@champion",
                               "--tracking-uri", uri, "--output", "json"], cwd=tmp, env=env,
                              check=True, capture_output=True, text=True)
        results = {r["variant"]: r for r in json.loads(done.stdout)}
        report(results, uri)
        distillation(uri, args.seeds)


def report(results: dict, uri: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    base = results["float32"]
    source = client.get_run(base["run_id"]).data.metrics["Source-Test-Accuracy"]
    print(f"source model (Keras, float32): test accuracy {source:.4f}")
    print("| variant | test accuracy | change (pt) | .tflite bytes (vs float32) | gzip bytes "
          "(vs float32) | latency ms | latency vs float32 | registered |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        metrics = client.get_run(r["run_id"]).data.metrics
        extra = (f", sparsity {metrics['Sparsity']:.2f}" if "Sparsity" in metrics else "") + (
            f", {metrics['Parameter-Count']:.0f} parameters" if name == "distilled" else "")
        print(f"| {name}{extra} | {r['score']:.4f} | {-r['drop']:+.2f} | {r['size']:.0f} "
              f"({r['size'] / base['size']:.2f}x) | {r['compressed']:.0f} "
              f"({r['compressed'] / base['compressed']:.2f}x) | {r['latency_ms']:.4f} | "
              f"{r['latency_ms'] / base['latency_ms']:.2f}x | "
              f"{'@' + name if r['version'] else r['reason']} |")


def distillation(uri: str, seeds: list[int]) -> None:
    """The product's distilled variant (``make``, measured as its ``.tflite`` file), with the
    default flags and with ``--alpha 1`` (the same student on the labels alone), per seed."""
    from pipeline.compression import choose_student
    from pipeline.promotion.registry import Registry
    from trial_image.compress.run import Source, build_parser, make
    from trial_image.trial_run import prepare_tensorflow

    prepare_tensorflow(0)  # deterministic, as the compress process is: same seed, same result
    os.environ["MLFLOW_TRACKING_URI"] = uri
    source = Source("models:/enas-digits@champion", retry_seconds=60)
    student = choose_student(Registry(uri, "enas-digits"), source.run).info.run_id
    accuracy: dict[str, list[float]] = {"with the teacher": [], "labels only": []}
    for label, alpha in (("with the teacher", []), ("labels only", ["--alpha", "1"])):
        for seed in seeds:
            args = build_parser().parse_args(["--model-uri", source.uri, "--student-run",
                                              student, "--seed", str(seed), *alpha])
            content, extra = make("distilled", source, args)
            accuracy[label].append(source.score_of(content))
    defaults = build_parser().parse_args(["--model-uri", source.uri])
    teacher, params = source.model.count_params(), extra["Parameter-Count"]
    print(f"\ndistillation: teacher {teacher} parameters, test accuracy {source.score:.4f}; "
          f"student {params:.0f} parameters ({params / teacher:.2f}x), "
          f"{defaults.distill_epochs} epochs, T={defaults.temperature}, alpha={defaults.alpha}")
    for label, values in accuracy.items():
        print(f"  {label}: test accuracy {statistics.fmean(values):.4f} "
              f"(seeds {', '.join(f'{v:.4f}' for v in values)})")


if __name__ == "__main__":
    main()
