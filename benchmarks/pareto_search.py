"""Pareto search against single-objective search on the ENAS digits space, same budget.

Three searches per seed, each through ``nasflow run`` exactly as a user runs them (20 trials,
``manifests/experiments/enas-digits.yaml``'s space and trial):

* ``enas``: the single-objective search (maximise Validation-Accuracy);
* ``pareto-evolution``: objectives Validation-Accuracy:max, Parameter-Count:min
  (``manifests/experiments/pareto-digits.yaml``);
* ``random``: every trial a random architecture (``evolution`` with population_size = the
  budget, so it never mutates).

Prints, per seed: the single-objective search's best accuracy and its size; the smallest model
the Pareto search (and random sampling) found within 0.5 points of that accuracy, and the ratio of
parameters; and the hypervolume of each search's front over (accuracy, parameters), reference
point accuracy 0.5 and 50,000 parameters (the space's largest candidates have ~33,000).

    .venv/bin/python benchmarks/pareto_search.py [--trials 20] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 0.005
SCALE = 50_000.0  # parameters are counted in units of the reference point
REFERENCE = (0.5, -1.0)
OBJECTIVES = [("Validation-Accuracy", True), ("Parameter-Count", False)]


def manifest(search: str, trials: int) -> dict:
    source = "pareto-digits.yaml" if search == "pareto-evolution" else "enas-digits.yaml"
    docs = list(yaml.safe_load_all((ROOT / "manifests/experiments" / source).read_text()))
    doc = docs[0]
    doc["spec"]["maxTrialCount"] = trials
    if search == "random":
        doc["metadata"]["name"] = "random-nas-digits"
        doc["spec"]["algorithm"] = {"algorithmName": "evolution", "algorithmSettings": [
            {"name": "population_size", "value": str(trials)}]}
    return doc


def run(search: str, seed: int, trials: int, workdir: Path) -> list[tuple[float, float]]:
    """(accuracy, parameters) of every succeeded trial."""
    from pipeline.engine.state import read_state
    from pipeline.engine.status import Objective
    from pipeline.katib.manifest import parse

    doc = manifest(search, trials)
    path = workdir / f"{search}-{seed}.yaml"
    path.write_text(yaml.safe_dump(doc))
    subprocess.run([sys.executable, "-m", "pipeline", "run", str(path), "--seed", str(seed),
                    "--quiet", "--no-mlflow", "--workdir", str(workdir / f"w-{search}-{seed}")],
                   cwd=workdir, check=True, stdout=subprocess.DEVNULL)
    experiment, _ = parse(str(path), doc)
    objective = Objective(experiment.spec.objective)
    _, records = read_state(workdir / f"w-{search}-{seed}", doc["metadata"]["name"])
    return [(objective.value(t), objective.value(t, "Parameter-Count")) for t in records
            if t.status == "Succeeded" and objective.value(t) is not None]


def summary(points: list[tuple[float, float]], target: float) -> tuple[float | None, float]:
    """(parameters of the smallest model within TOLERANCE of ``target``, hypervolume)."""
    from pipeline.suggestion import pareto

    within = [p for a, p in points if a >= target - TOLERANCE]
    scored = [(a, -p / SCALE) for a, p in points]
    front = [scored[i] for i in pareto.front(scored)]
    return (min(within) if within else None), pareto.hypervolume_2d(front, REFERENCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            found = {s: run(s, seed, args.trials, Path(tmp))
                     for s in ("enas", "pareto-evolution", "random")}
            best_acc, best_params = max(found["enas"], key=lambda p: (p[0], -p[1]))
            pareto_params, pareto_hv = summary(found["pareto-evolution"], best_acc)
            random_params, random_hv = summary(found["random"], best_acc)
            _, enas_hv = summary(found["enas"], best_acc)
            rows.append((seed, best_acc, best_params, pareto_params, random_params, pareto_hv,
                         random_hv, enas_hv))
            print(f"seed {seed}: single-objective best {best_acc:.4f} at {best_params:.0f} "
                  f"parameters; within 0.5 pt: Pareto {pareto_params}, random {random_params}; "
                  f"hypervolume Pareto {pareto_hv:.4f}, random {random_hv:.4f}, "
                  f"ENAS {enas_hv:.4f}", flush=True)
    print("\n| seed | ENAS best val. acc. | its parameters | Pareto: smallest within 0.5 pt "
          "(ratio) | random: same (ratio) | hypervolume Pareto / random / ENAS |")
    print("|---|---|---|---|---|---|")
    for seed, acc, params, pp, rp, phv, rhv, ehv in rows:
        def ratio(x: float | None, params: float = params) -> str:
            return "none" if x is None else f"{x:.0f} ({x / params:.2f}x)"
        print(f"| {seed} | {acc:.4f} | {params:.0f} | {ratio(pp)} | {ratio(rp)} | "
              f"{phv:.4f} / {rhv:.4f} / {ehv:.4f} |")
    ratios = [pp / params for _, _, params, pp, *_ in rows if pp is not None]
    hv_ratio = statistics.fmean(r[5] for r in rows) / statistics.fmean(r[6] for r in rows)
    if ratios:
        print(f"\nPareto search: median parameter ratio {statistics.median(ratios):.2f}x "
              f"({len(ratios)}/{len(rows)} seeds found a model within 0.5 pt); mean hypervolume "
              f"Pareto / random {hv_ratio:.2f}x")


if __name__ == "__main__":
    main()
