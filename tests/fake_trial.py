"""A tiny stand-in trial for engine tests: prints Katib metric lines, no TensorFlow.

    python tests/fake_trial.py --x=0.3 --y=2 [--epochs=4] [--fail] [--sleep=0.1] [--no-metric]
    [--nan] [--file=PATH --format=TEXT|JSON] [--echo-args=PATH] [--checkpoint-dir=PATH]

Objective ``score`` = 1 - (x - 0.5)^2 - 0.01 * y, rising over epochs to that value; ``cost`` =
10 * x + y (a second objective for Pareto searches). With ``--checkpoint-dir`` (PBT) the score
rises from the level the folder's ``state.json`` holds (written at the end: the trial's name,
its final level, the level it started from and the trials it continued).
"""

import argparse
import json
import os
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--y", type=float, default=0.0)
parser.add_argument("--epochs", type=int, default=4)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--fail", default="no")
parser.add_argument("--no-metric", action="store_true")
parser.add_argument("--nan", action="store_true", help="a diverged trial: score=nan")
parser.add_argument("--file")
parser.add_argument("--format", default="TEXT")
parser.add_argument("--echo-args")
parser.add_argument("--checkpoint-dir")
args, rest = parser.parse_known_args()
if args.echo_args:
    with open(args.echo_args, "w") as f:
        json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
                                                  if k.startswith(("KATIB", "MLFLOW", "FAKE"))}}, f)
if args.fail == "yes":
    print("something broke", file=sys.stderr)
    sys.exit(3)
final = 1 - (args.x - 0.5) ** 2 - 0.01 * args.y
state = {"trial": None, "level": 0.0, "lineage": []}
if args.checkpoint_dir and os.path.exists(os.path.join(args.checkpoint_dir, "state.json")):
    with open(os.path.join(args.checkpoint_dir, "state.json")) as f:
        state = json.load(f)
me = os.environ.get("KATIB_TRIAL_NAME")
if state["trial"] == me:  # its own, finished before the engine heard of it: the same run again
    state = {"trial": state["lineage"][-1] if state["lineage"] else None,
             "level": state["from"], "lineage": state["lineage"][:-1]}
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    if args.no_metric:
        print(f"epoch {epoch}")
        continue
    score = float("nan") if args.nan else state["level"] + final * epoch / args.epochs
    line = f"score={score:.6f} loss={1 - score:.6f} cost={10 * args.x + args.y:.6f}"
    if args.file:
        with open(args.file, "a") as f:
            if args.format == "JSON":
                f.write(json.dumps({"score": str(score), "loss": str(1 - score),
                                    "timestamp": time.time()}) + "\n")
            else:
                f.write(line + "\n")
    else:
        print(line, flush=True)
if args.checkpoint_dir:
    lineage = state["lineage"] + [state["trial"]] if state["trial"] else []
    with open(os.path.join(args.checkpoint_dir, "state.json.tmp"), "w") as f:
        json.dump({"trial": me, "level": score, "from": state["level"], "lineage": lineage,
                   "x": args.x}, f)
    os.replace(os.path.join(args.checkpoint_dir, "state.json.tmp"),
               os.path.join(args.checkpoint_dir, "state.json"))
