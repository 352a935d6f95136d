"""Search quality: best validation accuracy after 20 trials on digits, 3 seeds per algorithm.

ENAS and evolution search the NAS space of ``manifests/experiments/enas-digits.yaml``; TPE and
random search the hyperparameter space of ``random-digits.yaml`` (each algorithm on the space it
is made for). Every search runs through ``nasflow run`` exactly as a user would.

    .venv/bin/python benchmarks/search_quality.py [--trials 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEARCHES = {
    "enas": ("enas-digits.yaml", "enas"),
    "evolution": ("enas-digits.yaml", "evolution"),
    "tpe": ("random-digits.yaml", "tpe"),
    "random": ("random-digits.yaml", "random"),
}


def run_search(label: str, seed: int, trials: int, workdir: Path) -> tuple[float, float]:
    manifest_name, algorithm = SEARCHES[label]
    doc = yaml.safe_load((ROOT / "manifests" / "experiments" / manifest_name).read_text())
    name = f"q-{label}-{seed}"
    doc["metadata"]["name"] = name
    doc["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = name
    doc["spec"]["maxTrialCount"] = trials
    doc["spec"]["objective"].pop("goal", None)  # run the whole budget
    settings = doc["spec"]["algorithm"].get("algorithmSettings", [])
    if algorithm != "enas":
        settings = []  # seeds come from --seed; ENAS keeps the manifest's controller settings
    doc["spec"]["algorithm"] = {"algorithmName": algorithm, "algorithmSettings": settings}
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--seed", str(seed), "--quiet",
         "--output", "json", "--workdir", str(workdir / ".nasflow"),
         "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    status = json.loads(result.stdout)
    best = next(m for m in status["currentOptimalTrial"]["observation"]["metrics"]
                if m["name"] == "Validation-Accuracy")
    return float(best["max"]), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), default=list(SEARCHES))
    args = parser.parse_args()
    seeds = ", ".join(map(str, args.seeds))
    print(f"| algorithm | space | best validation accuracy per seed ({seeds}) | mean ± stdev "
          "| wall time per search |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.only:
            results = [run_search(label, seed, args.trials, Path(tmp)) for seed in args.seeds]
            accs = [a for a, _ in results]
            spread = statistics.stdev(accs) if len(accs) > 1 else 0.0
            space = "NAS (ENAS wire format)" if SEARCHES[label][0].startswith("enas") else "HP"
            print(f"| {label} | {space} | {', '.join(f'{a:.4f}' for a in accs)} | "
                  f"{statistics.fmean(accs):.4f} ± {spread:.4f} | "
                  f"{statistics.fmean(t for _, t in results) / 60:.1f} min |", flush=True)


if __name__ == "__main__":
    main()
