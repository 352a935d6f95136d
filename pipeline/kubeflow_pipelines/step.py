"""What a pipeline step runs: ``nasflow kfp stage NAME`` in the step's image, told the run's
parameters and what the steps before it decided (standard library only: the step's Python is
the one ``kfp`` runs in, which need not hold nasflow's dependencies)."""

import json
import os
import subprocess
from typing import Any


def run(stage: str, parameters: dict, experiment: str, told: str, links: Any) -> tuple:
    """The stage's outputs in its component's order; its MLflow links go to ``links``' metadata.
    Its log lines pass through to the step's log; a failed stage fails the step."""
    step = json.loads(subprocess.run(
        [os.environ.get("NASFLOW", "nasflow"), "kfp", "stage", stage],
        input=json.dumps({"parameters": {**parameters, "experiment": experiment},
                          "told": told}),
        stdout=subprocess.PIPE, text=True, check=True).stdout)
    links.metadata.update(step["links"])
    return tuple(step["outputs"].values())
