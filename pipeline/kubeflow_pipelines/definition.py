"""The Kubeflow Pipelines (v2) pipeline of the story, built with the ``kfp`` SDK.

Runs in a Python that has ``kfp`` (not nasflow's: see the package's docstring) and imports
nothing of nasflow's. ``nasflow kfp compile`` hands it, as JSON on stdin, what to build: the
stages in the story's order with each step's outputs, the parameters with their defaults, the
image and the output file. Each step runs its stage through
:mod:`pipeline.kubeflow_pipelines.step` and returns what the stage decided.
"""

import importlib.util
import inspect
import json
import sys
import tempfile
from pathlib import Path

from kfp import compiler, dsl

# A step: the run's parameters, the manifest, what the steps before it told; its outputs are
# ``told`` and its stage's decisions, its MLflow links the metadata of its ``mlflow`` artifact.
# kfp ships a step as its function's source, so each step is written out from this template
# (a step cannot call a helper of this module, and its outputs differ).
STEP = '''
from typing import NamedTuple

from kfp import dsl


def {name}(parameters: dict, experiment: str, told: str,
        mlflow: dsl.Output[dsl.Artifact]) -> NamedTuple("Outputs", {outputs}):
    """{help}"""
    from pipeline.kubeflow_pipelines.step import run

    return run({name!r}, parameters, experiment, told, mlflow)
'''
TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def steps(spec: dict, folder: Path) -> dict:
    """The spec's steps as kfp components (their source in ``folder``, which kfp reads)."""
    source = folder / "nasflow_steps.py"
    source.write_text("".join(STEP.format(
        name=name, help=spec["steps"][name]["help"],
        outputs="[" + ", ".join(f"({output!r}, str)" for output in
                                ["told", *spec["steps"][name]["outputs"]]) + "]")
        for name in spec["stages"]))
    loader = importlib.util.spec_from_file_location("nasflow_steps", source)
    module = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(module)
    return {name: dsl.component(base_image=spec["image"])(getattr(module, name))
            for name in spec["stages"]}


def build(spec: dict, folder: Path):
    """The pipeline function: ``spec["parameters"]`` as its signature, one step per stage."""
    components = steps(spec, folder)
    names = [p["name"] for p in spec["parameters"]]

    def story(*values):  # kfp calls it with its parameters in the signature's order
        parameters = dict(zip(names, values, strict=True))
        # the manifest is JSON: inside the dict, kfp would not escape its quotes
        experiment = parameters.pop("experiment")
        told = ""
        for name in spec["stages"]:
            task = components[name](parameters=parameters, experiment=experiment, told=told)
            task.set_display_name(name)
            task.set_caching_options(False)  # a retraining run must run, not be recalled
            told = task.outputs["told"]

    story.__signature__ = inspect.Signature([
        inspect.Parameter(p["name"], inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=p["default"], annotation=TYPES[p["type"]])
        for p in spec["parameters"]])
    story.__annotations__ = {p["name"]: TYPES[p["type"]] for p in spec["parameters"]}
    story.__name__ = spec["name"]
    return dsl.pipeline(name=spec["name"], description=spec["description"])(story)


def main() -> None:
    spec = json.load(sys.stdin)
    with tempfile.TemporaryDirectory() as folder:
        compiler.Compiler().compile(build(spec, Path(folder)), spec["output"])


if __name__ == "__main__":
    main()
