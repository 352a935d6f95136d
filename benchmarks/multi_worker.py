"""Multi-worker trials: the same candidate, global batch and seed trained by 1 worker and by 2
(MultiWorkerMirroredStrategy, two local processes as the embedded engine starts them), side by
side: final validation accuracy, its difference, wall time and the ratio.

Three candidates: without dropout or batch normalisation (the 2-worker curve should follow the
1-worker one to within rounding), with batch normalisation (each worker normalises with its
half-batch's statistics), and with dropout (each worker draws its own masks). On a machine with
fewer cores than workers × TensorFlow's threads, no speed-up is expected: this measures what a
second worker costs, and whether the result moves.

    .venv/bin/python benchmarks/multi_worker.py [--epochs 15] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline.engine.workers import LocalWorkers  # noqa: E402

CANDIDATES = {
    "plain": ["--batch-norm=false", "--dropout=0"],
    "batch-norm": ["--batch-norm=true", "--dropout=0"],
    "dropout 0.2": ["--batch-norm=false", "--dropout=0.2"],
}
COMMON = ["--num-blocks=2", "--filters=16", "--kernel-size=3", "--learning-rate=0.003",
          "--batch-size=64", "--seed=3", "--patience=100", "--skip-test",
          "--experiment-name=multi-worker-benchmark"]
VALIDATION = re.compile(r"^\S+ Validation-Accuracy=([0-9.]+)$", re.M)


def trial(argv: list[str], workers: int, folder: Path, uri: str) -> tuple[float, float]:
    """(final validation accuracy, wall seconds) of one trial of ``workers`` processes."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(ROOT),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder.mkdir(parents=True)
    start = time.perf_counter()
    with open(folder / "metrics.log", "wb") as log:
        code = LocalWorkers([sys.executable, "-m", "trial_image", *argv], env, ROOT, folder, log,
                            workers, 10.0).wait() if workers > 1 else subprocess.run(
            [sys.executable, "-m", "trial_image", *argv], env=env, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - start
    text = (folder / "metrics.log").read_text(errors="replace")
    if code != 0:
        raise SystemExit(f"trial failed ({code}): {text[-2000:]}")
    return float(VALIDATION.findall(text)[-1]), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(f"digits, {args.epochs} epochs, global batch 64, seed 3; 1 worker vs {args.workers} "
          f"({os.cpu_count()} cores)")
    print(f"{'candidate':12} {'1 worker':>9} {f'{args.workers} workers':>10} {'|diff|':>7} "
          f"{'1 w. s':>7} {f'{args.workers} w. s':>7} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        for name, flags in CANDIDATES.items():
            argv = [*COMMON, f"--epochs={args.epochs}", *flags]
            tag = re.sub(r"\W+", "-", name)
            one, one_s = trial([*argv, f"--trial-name={tag}-1"], 1, Path(tmp) / f"{tag}-1", uri)
            many, many_s = trial([*argv, f"--trial-name={tag}-n"], args.workers,
                                 Path(tmp) / f"{tag}-n", uri)
            print(f"{name:12} {one:9.4f} {many:10.4f} {abs(one - many):7.4f} {one_s:7.1f} "
                  f"{many_s:7.1f} {many_s / one_s:6.2f}")


if __name__ == "__main__":
    main()
