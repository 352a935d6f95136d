"""``nasflow kfp``: the story as a Kubeflow Pipelines (v2) pipeline (:mod:`pipeline.kubeflow_
pipelines`). ``compile`` writes the pipeline of a pipeline config; ``stage`` is what each of its
steps runs."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from pipeline.cli.common import UsageError, experiment_url, load_experiment, tracking_uri
from pipeline.cli.retraining import engine_flags, retrain

DEFAULT_IMAGE = "nasflow-pipeline:0.1.0"  # the CronJob's: nasflow and the cluster's clients
MAX_STEP_INPUT = 4 << 20  # bytes of parameters and decisions a step reads


def kfp_python(args: argparse.Namespace) -> str:
    """A Python with ``kfp``: the flag, $NASFLOW_KFP_PYTHON, ``make install``'s .venv/kfp, or
    this one."""
    beside = Path(sys.prefix) / "kfp" / "bin" / "python"
    return (args.kfp_python or os.environ.get("NASFLOW_KFP_PYTHON")
            or (str(beside) if beside.exists() else sys.executable))


def cmd_compile(args: argparse.Namespace) -> int:
    from pipeline.kubeflow_pipelines.parameters import (
        PARAMETERS,
        RUN_PARAMETERS,
        STEPS,
        defaults,
    )
    from pipeline.lifecycle import STAGES
    from pipeline.retraining import ConfigError, PipelineConfig

    try:
        config = PipelineConfig.load(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    manifest = load_experiment(config.experiment, None)  # refused here, not in a step
    # one line of JSON (YAML too): kfp copies defaults into a comment, line by line
    run = {"experiment": json.dumps(manifest.raw), "engine": args.engine,
           "trackingUri": args.tracking_uri or "", "workdir": str(args.workdir)}
    parameters = [{"name": p.name, "type": p.kfp_type, "default": value}
                  for p, value in zip(PARAMETERS, defaults(config).values(), strict=True)]
    parameters += [{"name": name, "type": "str", "default": run[name]}
                   for name, _ in RUN_PARAMETERS]
    spec = {"name": f"nasflow-{config.label}", "image": args.image,
            "steps": {name: {"outputs": outputs, "help": help}
                      for name, (outputs, help) in STEPS.items()},
            "description": f"nasflow: search {config.prefix} on {args.engine}, then "
            + ", ".join(s.name for s in STAGES) + f" of model {config.model}",
            "stages": ["search", *(s.name for s in STAGES)], "parameters": parameters,
            "output": str(args.output.resolve())}
    root = Path(__file__).resolve().parents[2]  # nasflow's own package, for the definition
    python = kfp_python(args)
    try:
        done = subprocess.run([python, "-m", "pipeline.kubeflow_pipelines.definition"],
                              input=json.dumps(spec), text=True, capture_output=True,
                              env={**os.environ, "PYTHONPATH": str(root)}, timeout=300)
    except OSError as exc:
        raise UsageError(f"--kfp-python {python}: {exc.strerror}") from None
    if "No module named 'kfp'" in done.stderr:
        raise UsageError(f"{python} has no kfp: install kfp==2.17.3 in a Python of its own "
                         "(it pins protobuf<7) and name it with --kfp-python or "
                         "NASFLOW_KFP_PYTHON (make install makes .venv/kfp)")
    if done.returncode:
        print(done.stderr, file=sys.stderr, end="")
        return 1
    print(f"wrote {args.output}: {len(spec['stages'])} steps ({', '.join(spec['stages'])}), "
          f"{len(parameters)} parameters, image {args.image}")
    return 0


def _links(uri: str, stage: str, result: dict[str, Any], model: str) -> dict[str, str]:
    """The MLflow pages of what ``stage`` made, for the step's output metadata."""
    from pipeline.cli.common import LOCAL_UI
    from pipeline.promotion.registry import variants_of

    base = (uri if uri.startswith(("http://", "https://")) else LOCAL_UI).rstrip("/")
    links = {"tracking_uri": uri}
    if stage == "search":
        from mlflow import MlflowClient

        found = MlflowClient(uri).get_experiment_by_name(result["experiment"])
        if found:
            links["mlflow_experiment"] = experiment_url(base, found.experiment_id)
    elif stage == "finalize" and result["final"]:
        links["mlflow_run"] = f"{base}/#/runs/{result['final']['final_run']}"
    elif stage == "promote" and result["promotion"]:
        links["mlflow_model_version"] = (f"{base}/#/models/{model}/versions/"
                                         f"{result['promotion']['version']}")
    elif stage == "compress" and result["compression"]:
        links["mlflow_variants"] = f"{base}/#/models/{variants_of(model)}"
    return links


def _outputs(stage: str, result: dict[str, Any], model: str) -> dict[str, str]:
    """What ``stage`` decided, in its step's order of outputs (parameters.STEPS)."""
    from pipeline.kubeflow_pipelines.parameters import STEPS

    final, promotion = result.get("final") or {}, result.get("promotion") or {}
    decided = {
        "experiment": result.get("experiment", ""), "phase": result.get("phase", ""),
        "optimal_trial": result.get("optimalTrial") or "",
        "final_run": final.get("final_run", ""), "test_score": str(final.get("test_score", "")),
        "decision": promotion.get("decision", ""),
        "champion_uri": f"models:/{model}@champion" if promotion.get("champion") else "",
        "refused_by": promotion.get("reason", ""),
        "variants": ",".join(v["variant"] for v in result.get("compression") or []
                             if v.get("version"))}
    return {name: decided[name] for name in STEPS[stage][0]}


def cmd_stage(args: argparse.Namespace) -> int:
    """Run one stage of a pipeline step: stdin ``{"parameters": ..., "told": ...}``; stdout
    one JSON object, ``{"outputs": ..., "links": ...}``, and nothing else (what the stage's
    processes print goes to stderr, the step's log)."""
    from pipeline.kubeflow_pipelines.parameters import RUN_PARAMETERS, config_document
    from pipeline.lifecycle import STAGES
    from pipeline.retraining import ConfigError, PipelineConfig

    known = ["search", *(stage.name for stage in STAGES)]
    if args.stage not in known:
        raise UsageError(f"nasflow kfp stage: {args.stage!r} is not one of {', '.join(known)}")
    step = _step_input()
    parameters = dict(step["parameters"])
    run = {name: str(parameters.pop(name, "")) for name, _ in RUN_PARAMETERS}
    flags = argparse.ArgumentParser(prog="nasflow kfp stage", exit_on_error=False)
    engine_flags(flags)
    try:
        engine = flags.parse_args(["--engine", run["engine"] or "katib", "--workdir",
                                   run["workdir"] or ".nasflow"]
                                  + (["--tracking-uri", run["trackingUri"]]
                                     if run["trackingUri"] else []))
    except argparse.ArgumentError as exc:
        raise UsageError(f"pipeline parameters: {exc}") from None
    stdout = os.dup(1)
    os.dup2(2, 1)  # the stage's processes write to the log, never into the JSON
    with tempfile.TemporaryDirectory(prefix="nasflow-step-") as tmp:
        manifest = Path(tmp) / "experiment.yaml"
        manifest.write_text(run["experiment"])
        try:
            config = PipelineConfig.from_document(config_document(parameters, str(manifest)),
                                                  "pipeline parameters", Path(tmp))
        except ConfigError as exc:
            message = str(exc)
            raise UsageError(message if message.startswith("pipeline parameters")
                             else f"pipeline parameters: {message}") from None
        told = json.loads(step["told"]) if step["told"] else None
        result = retrain(config, engine, only=args.stage, told=told)
    uri = tracking_uri(engine)
    answer = {"outputs": {"told": json.dumps(result, default=str),
                          **_outputs(args.stage, result, config.model)},
              "links": _links(uri, args.stage, result, config.model)}
    with os.fdopen(stdout, "w") as out:
        json.dump(answer, out)
    return 0 if result["phase"] == "Succeeded" else 1


def _step_input() -> dict[str, Any]:
    text = sys.stdin.read(MAX_STEP_INPUT + 1)
    if len(text) > MAX_STEP_INPUT:
        raise UsageError(f"nasflow kfp stage: more than {MAX_STEP_INPUT} bytes on stdin")
    try:
        step = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"nasflow kfp stage: stdin is not JSON: {exc}") from None
    if not (isinstance(step, dict) and isinstance(step.get("parameters"), dict)
            and isinstance(step.get("told"), str)):
        raise UsageError('nasflow kfp stage: stdin is {"parameters": {...}, "told": "..."}')
    return step


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("kfp", help="the story as a Kubeflow Pipelines pipeline",
                       description="Compile a pipeline config into a Kubeflow Pipelines (v2) "
                       "pipeline: one step per stage (search, final training, promotion, "
                       "compression), the config's settings as its parameters.")
    kfp = p.add_subparsers(dest="kfp_command", required=True)
    c = kfp.add_parser("compile", help="write the pipeline of a pipeline config")
    c.add_argument("config", type=Path, help="the pipeline config (nasflow pipeline --config)")
    c.add_argument("-o", "--output", type=Path, default=Path("pipeline.yaml"))
    c.add_argument("--image", default=DEFAULT_IMAGE,
                   help=f"the steps' image: nasflow and its cluster clients (default "
                   f"{DEFAULT_IMAGE}); trials and final runs use the config's trialImage")
    c.add_argument("--engine", choices=("katib", "embedded"), default="katib",
                   help="the default of the engine parameter (embedded: every step on one "
                   "machine that shares --workdir, e.g. kfp.local)")
    c.add_argument("--workdir", type=Path, default=Path(".nasflow"))
    c.add_argument("--tracking-uri", help="the default of trackingUri (default: the steps' "
                   "MLFLOW_TRACKING_URI)")
    c.add_argument("--kfp-python", help="a Python with kfp 2.17 (default: .venv/kfp's)")
    c.set_defaults(func=cmd_compile)
    s = kfp.add_parser("stage", help="run one stage of a step (what each step runs)")
    s.add_argument("stage", help="search, or a stage of the story (pipeline.lifecycle)")
    s.set_defaults(func=cmd_stage)
