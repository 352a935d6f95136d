"""Search quality: 20 trials on digits, 3 seeds per algorithm, then final training.

ENAS and evolution search the NAS space of ``manifests/experiments/enas-digits.yaml``; TPE and
random search the hyperparameter space of ``random-digits.yaml`` (each algorithm on the space it
is made for). Every search runs through ``nasflow run --finalize`` exactly as a user would: the
table shows the best trial's validation and test accuracy, the finalized model's test accuracy
and what final training cost next to the search. Baselines on the same split: an RBF SVM and
KerasTuner's RandomSearch (its best hyperparameters retrained on training + validation).

    .venv/bin/python benchmarks/search_quality.py [--trials 20] [--seeds 0 1 2] [--no-baselines]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SEARCHES = {
    "enas": ("enas-digits.yaml", "enas"),
    "evolution": ("enas-digits.yaml", "evolution"),
    "tpe": ("random-digits.yaml", "tpe"),
    "random": ("random-digits.yaml", "random"),
}


def run_search(label: str, seed: int, trials: int, workdir: Path) -> dict[str, float]:
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
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", str(path), "--seed", str(seed), "--quiet",
         "--finalize", "--output", "json", "--workdir", str(workdir / ".nasflow"),
         "--tracking-uri", f"sqlite:///{workdir / 'mlflow.db'}"],
        cwd=ROOT, capture_output=True, text=True, check=True)
    out = json.loads(result.stdout)
    status, final = out["search"], out["final"]
    best = next(m for m in status["currentOptimalTrial"]["observation"]["metrics"]
                if m["name"] == "Validation-Accuracy")
    return {"validation": float(best["max"]), "search_test": final["best_search_test_score"],
            "final_test": final["test_score"], "search_s": status["elapsedSeconds"],
            "final_s": final["seconds"]}


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return (f"{', '.join(f'{v:.4f}' for v in values)} (**{statistics.fmean(values):.4f}** ± "
            f"{spread:.4f})")


def baselines(trials: int, seeds: list[int], tmp: Path) -> None:
    from baselines import keras_tuner_retrained, keras_tuner_search, svc_test_accuracy

    print(f"\nSVC(C=10), raw pixels, fitted on training + validation: test accuracy "
          f"{svc_test_accuracy():.4f}")
    tests = [keras_tuner_retrained(keras_tuner_search(tmp, trials, 15, seed), 15)
             for seed in seeds]
    print(f"KerasTuner RandomSearch, {trials} trials × 15 epochs, best retrained on training + "
          f"validation, test accuracy per seed: {cell(tests)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=list(SEARCHES), default=list(SEARCHES))
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args()
    seeds = ", ".join(map(str, args.seeds))
    print(f"Per seed ({seeds}), then the mean ± stdev.\n")
    print("| algorithm | space | best trial: validation accuracy | best trial: test accuracy | "
          "finalized model: test accuracy | search wall time | final training / search |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label in args.only:
            rows = [run_search(label, seed, args.trials, Path(tmp)) for seed in args.seeds]
            space = "NAS (ENAS wire format)" if SEARCHES[label][0].startswith("enas") else "HP"
            ratios = [r["final_s"] / r["search_s"] for r in rows]
            print(f"| {label} | {space} | {cell([r['validation'] for r in rows])} | "
                  f"{cell([r['search_test'] for r in rows])} | "
                  f"{cell([r['final_test'] for r in rows])} | "
                  f"{statistics.fmean(r['search_s'] for r in rows):.0f} s | "
                  f"{statistics.fmean(ratios):.2f} |", flush=True)
        if not args.no_baselines:
            baselines(args.trials, args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
