"""The Kubeflow Pipelines (v2) pipeline of the story, built with the ``kfp`` SDK.

Runs in a Python that has ``kfp`` (not nasflow's: see the package's docstring) and imports
nothing of nasflow's. ``nasflow kfp compile`` hands it, as JSON on stdin, what to build: the
stages in the story's order, the parameters with their defaults, the image and the output file.
Each step runs its stage through :mod:`pipeline.kubeflow_pipelines.step` and returns what the
stage decided.
"""

import inspect
import json
import sys
from typing import NamedTuple

from kfp import compiler, dsl

# Each step: the run's parameters, the manifest, what the steps before it told; its outputs are
# what it told and its stage's decisions, its MLflow links the metadata of its ``mlflow``
# artifact. (kfp rebuilds a step from its source: annotations are written out, not aliased.)

def search(parameters: dict, experiment: str, told: str,
           mlflow: dsl.Output[dsl.Artifact]) -> NamedTuple(
        "Searched", [("told", str), ("experiment", str), ("phase", str),
                     ("optimal_trial", str)]):
    """Search: Katib (or the embedded engine) runs the Experiment to its end."""
    from pipeline.kubeflow_pipelines.step import run

    return run("search", parameters, experiment, told, mlflow)


def finalize(parameters: dict, experiment: str, told: str,
             mlflow: dsl.Output[dsl.Artifact]) -> NamedTuple(
        "Finalized", [("told", str), ("final_run", str), ("test_score", str)]):
    """Final training of the search's best trials; the final run is what is promoted."""
    from pipeline.kubeflow_pipelines.step import run

    return run("finalize", parameters, experiment, told, mlflow)


def promote(parameters: dict, experiment: str, told: str,
            mlflow: dsl.Output[dsl.Artifact]) -> NamedTuple(
        "Promoted", [("told", str), ("decision", str), ("champion_uri", str),
                     ("refused_by", str)]):
    """Promotion through the gates against the champion on the same test split."""
    from pipeline.kubeflow_pipelines.step import run

    return run("promote", parameters, experiment, told, mlflow)


def compress(parameters: dict, experiment: str, told: str,
             mlflow: dsl.Output[dsl.Artifact]) -> NamedTuple(
        "Compressed", [("told", str), ("variants", str)]):
    """Compression of the champion: the variants registered."""
    from pipeline.kubeflow_pipelines.step import run

    return run("compress", parameters, experiment, told, mlflow)


STEPS = {f.__name__: f for f in (search, finalize, promote, compress)}
TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def build(spec: dict):
    """The pipeline function: ``spec["parameters"]`` as its signature, one step per stage."""
    steps = {name: dsl.component(base_image=spec["image"])(STEPS[name])
             for name in spec["stages"]}

    names = [p["name"] for p in spec["parameters"]]

    def story(*values):  # kfp calls it with its parameters in the signature's order
        parameters = dict(zip(names, values, strict=True))
        # the manifest is JSON: inside the dict, kfp would not escape its quotes
        experiment = parameters.pop("experiment")
        told = ""
        for name in spec["stages"]:
            task = steps[name](parameters=parameters, experiment=experiment, told=told)
            task.set_display_name(name)
            task.set_caching_options(False)  # a retraining run must run, not be recalled
            told = task.outputs["told"]

    story.__signature__ = inspect.Signature([
        inspect.Parameter(p["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p["default"],
                          annotation=TYPES[p["type"]]) for p in spec["parameters"]])
    story.__annotations__ = {p["name"]: TYPES[p["type"]] for p in spec["parameters"]}
    story.__name__ = spec["name"]
    return dsl.pipeline(name=spec["name"], description=spec["description"])(story)


def main() -> None:
    spec = json.load(sys.stdin)
    compiler.Compiler().compile(build(spec), spec["output"])


if __name__ == "__main__":
    main()
