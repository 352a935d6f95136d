"""A tiny stand-in trial for engine tests: prints Katib metric lines, no TensorFlow.

    python tests/fake_trial.py --x=0.3 --y=2 [--epochs=4] [--fail] [--sleep=0.1] [--no-metric]
    [--nan] [--file=PATH --format=TEXT|JSON] [--echo-args=PATH]

Objective ``score`` = 1 - (x - 0.5)^2 - 0.01 * y, rising over epochs to that value; ``cost`` =
10 * x + y (a second objective for Pareto searches).
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
args, rest = parser.parse_known_args()
if args.echo_args:
    with open(args.echo_args, "w") as f:
        json.dump({"argv": sys.argv[1:], "env": {k: v for k, v in os.environ.items()
                                                  if k.startswith(("KATIB", "MLFLOW", "FAKE"))}}, f)
if args.fail == "yes":
    print("something broke", file=sys.stderr)
    sys.exit(3)
final = 1 - (args.x - 0.5) ** 2 - 0.01 * args.y
for epoch in range(1, args.epochs + 1):
    time.sleep(args.sleep)
    if args.no_metric:
        print(f"epoch {epoch}")
        continue
    score = float("nan") if args.nan else final * epoch / args.epochs
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
