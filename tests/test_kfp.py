"""The story as a Kubeflow Pipelines (v2) pipeline: ``nasflow kfp compile`` writes a pipeline that
KFP's own pipeline-spec model accepts, whose parameters carry the config both ways, and that
``kfp.local.SubprocessRunner`` runs to a champion on the embedded engine (no cluster).

The ``kfp`` SDK lives in ``.venv/kfp`` (make install): it pins protobuf<7.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.kubeflow_pipelines.parameters import PARAMETERS, config_document, defaults
from pipeline.retraining import ConfigError, PipelineConfig
from tests.conftest import ROOT
from tests.test_engine_e2e import small

KFP_PYTHON = ROOT / ".venv" / "kfp" / "bin" / "python"
STEPS = ["search", "finalize", "promote", "compress"]


def nasflow(*args: str, stdin: str | None = None, cwd: Path = ROOT
            ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline", *args], input=stdin, cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def config_file(tmp_path: Path, name: str, **settings) -> Path:
    manifest = small("random-digits.yaml", name, trials=2, epochs=1, tmp_path=tmp_path)
    path = tmp_path / f"{name}-pipeline.yaml"
    path.write_text(yaml.safe_dump({"experiment": manifest, **settings}))
    return path


def as_kfp_hands_them(values: dict) -> dict:
    """A step's parameters: kfp turns every value of the dict into its string."""
    return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}


@pytest.mark.parametrize("settings", [
    {"model": "kfp-m", "minImprovement": 0.002, "metric": "Test-RMSE", "minimizeMetric": True,
     "finalize": {"topK": 2, "epochs": 4, "augment": "none"}, "retention": 2,
     "gates": {"minAccuracy": 0.9, "maxParameters": 50000, "metrics": "Test-R2>=0.4"},
     "compress": {"variants": "float16,int8-dynamic", "maxAccuracyDrop": 1.5},
     "trialImage": "registry.test/nasflow-trial:2", "namespace": "team-a"},
    {"finalize": False, "compress": False},
    {},
], ids=["every-setting", "sections-off", "defaults"])
def test_parameters_carry_the_config_both_ways(tmp_path, settings):
    path = config_file(tmp_path, "kfp-params", **settings)
    config = PipelineConfig.load(path)
    values = defaults(config)
    assert list(values) == [p.name for p in PARAMETERS]
    back = PipelineConfig.from_document(
        config_document(as_kfp_hands_them(values), str(config.experiment)), "parameters",
        tmp_path)
    assert back == config
    assert back.decisions == config.decisions


def test_a_wrong_parameter_is_named(tmp_path):
    manifest = str(tmp_path / "m.yaml")
    with pytest.raises(ConfigError, match=r"finalize_topK: '2\.5' is not an integer"):
        config_document({"finalize_topK": "2.5"}, manifest)
    with pytest.raises(ConfigError, match="minimizeMetric: 'yes' is not true or false"):
        config_document({"minimizeMetric": "yes"}, manifest)
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) topK"):
        config_document({"topK": "2"}, manifest)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("kfp")
    path = config_file(tmp, "kfp-digits", model="kfp-model", finalize={"topK": 1, "epochs": 2},
                       gates={"minAccuracy": 0.05},
                       compress={"variants": "float16", "maxAccuracyDrop": 100})
    done = nasflow("kfp", "compile", str(path), "-o", str(tmp / "pipeline.yaml"), "--image",
                   "registry.test/nasflow-pipeline:9", "--engine", "embedded", "--workdir",
                   str(tmp / ".nasflow"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {tmp / 'pipeline.yaml'}: 4 steps (search, finalize, "
                                  "promote, compress), 27 parameters")
    return {"tmp": tmp, "config": PipelineConfig.load(path),
            "spec": yaml.safe_load((tmp / "pipeline.yaml").read_text())}


def test_the_compiled_pipeline_is_kfps_own_pipeline_spec(compiled):
    """Parsed strictly (an unknown field fails) into kfp-pipeline-spec's PipelineSpec."""
    check = subprocess.run([str(KFP_PYTHON), "-c", """
import json, sys, yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
spec = json_format.ParseDict(yaml.safe_load(open(sys.argv[1])), pipeline_spec_pb2.PipelineSpec())
print(json.dumps({"tasks": {n: list(t.dependent_tasks) for n, t in spec.root.dag.tasks.items()},
                  "name": spec.pipeline_info.name, "schema": spec.schema_version}))
""", str(compiled["tmp"] / "pipeline.yaml")], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    parsed = json.loads(check.stdout)
    assert parsed["name"] == "nasflow-kfp-digits" and parsed["schema"] == "2.1.0"
    # one step per stage, each after the one before, in the story's order
    assert parsed["tasks"] == {"search": [], "finalize": ["search"], "promote": ["finalize"],
                               "compress": ["promote"]}


def test_the_pipeline_has_the_configs_settings_and_the_stages_decisions(compiled):
    spec, config = compiled["spec"], compiled["config"]
    inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {p.name for p in PARAMETERS} | {"experiment", "engine", "trackingUri",
                                                          "workdir"}
    assert inputs["model"]["defaultValue"] == "kfp-model"
    assert inputs["finalize_topK"] == {"parameterType": "NUMBER_INTEGER", "defaultValue": 1,
                                       "isOptional": True}
    assert inputs["gates_minAccuracy"]["defaultValue"] == "0.05"
    assert inputs["compress"] == {"parameterType": "BOOLEAN", "defaultValue": True,
                                  "isOptional": True}
    assert inputs["engine"]["defaultValue"] == "embedded"
    assert json.loads(inputs["experiment"]["defaultValue"])["metadata"]["name"] == "kfp-digits"
    assert defaults(config)["finalize_epochs"] == 2
    outputs = {name: set(c["outputDefinitions"]["parameters"])
               for name, c in spec["components"].items()}
    assert outputs == {
        "comp-search": {"told", "experiment", "phase", "optimal_trial"},
        "comp-finalize": {"told", "final_run", "test_score"},
        "comp-promote": {"told", "decision", "champion_uri", "refused_by"},
        "comp-compress": {"told", "variants"}}
    for component in spec["components"].values():
        assert component["outputDefinitions"]["artifacts"] == {"mlflow": {"artifactType": {
            "schemaTitle": "system.Artifact", "schemaVersion": "0.0.1"}}}
    for executor in spec["deploymentSpec"]["executors"].values():
        assert executor["container"]["image"] == "registry.test/nasflow-pipeline:9"
    for task in spec["root"]["dag"]["tasks"].values():
        assert not task.get("cachingOptions", {}).get("enableCache")  # a retraining re-runs


@pytest.mark.slow
def test_the_pipeline_runs_locally_to_a_champion(compiled, mlflow_server):
    """kfp.local.SubprocessRunner runs the compiled file, each step in its own process calling
    ``nasflow kfp stage``: search, final training, promotion, compression."""
    tmp = compiled["tmp"]
    run = subprocess.run([str(KFP_PYTHON), "-c", """
import sys
from kfp import components, local
local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=sys.argv[2])
components.load_component_from_file(sys.argv[1])(trackingUri=sys.argv[3])
""", str(tmp / "pipeline.yaml"), str(tmp / "root"), mlflow_server.uri], cwd=tmp,
        capture_output=True, text=True, timeout=600,
        env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
             "HOME": str(tmp)})
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    (root,) = (tmp / "root").iterdir()
    told = {step: json.loads((root / step / "executor_output.json").read_text())
            for step in STEPS}
    values = {step: told[step]["parameterValues"] for step in STEPS}
    links = {step: told[step]["artifacts"]["mlflow"]["artifacts"][0]["metadata"]
             for step in STEPS}
    assert values["search"]["phase"] == "Succeeded"
    assert values["search"]["experiment"].startswith("kfp-digits-")
    assert values["promote"]["decision"] == "champion"
    assert values["promote"]["champion_uri"] == "models:/kfp-model@champion"
    assert values["promote"]["refused_by"] == ""
    assert values["compress"]["variants"] == "float16"
    client = MlflowClient(mlflow_server.uri)
    champion = client.get_model_version_by_alias("kfp-model", "champion")
    assert champion.run_id == values["finalize"]["final_run"]
    assert client.get_run(champion.run_id).data.tags["nasflow.role"] == "final"
    assert client.get_model_version_by_alias("kfp-model-variants", "float16").version == "1"
    assert links["promote"]["mlflow_model_version"] == (
        f"{mlflow_server.uri}/#/models/kfp-model/versions/{champion.version}")
    assert links["finalize"]["mlflow_run"].endswith(f"/#/runs/{champion.run_id}")
    # the last step's told is the whole story, as `nasflow pipeline --output json` prints it
    story = json.loads(values["compress"]["told"])
    assert str(story["promotion"]["version"]) == champion.version
    assert [v["variant"] for v in story["compression"]] == ["float16"]


def test_compile_without_kfp_says_where_to_get_it(tmp_path):
    path = config_file(tmp_path, "kfp-nokfp")
    done = nasflow("kfp", "compile", str(path), "-o", str(tmp_path / "p.yaml"), "--kfp-python",
                   sys.executable)
    assert done.returncode == 2
    assert "has no kfp: install kfp==2.17.3 in a Python of its own" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize(("argv", "stdin", "message"), [
    (["stage", "deploy"], "{}", "'deploy' is not one of search, finalize, promote, compress"),
    (["stage", "promote"], "not json", "stdin is not JSON"),
    (["stage", "promote"], '{"parameters": []}', 'stdin is {"parameters": {...}, "told": "..."}'),
    (["stage", "promote"], json.dumps({"parameters": {"finalize_topK": "x", "experiment": "{}"},
                                       "told": ""}),
     "pipeline parameters: finalize_topK: 'x' is not a number"),
])
def test_a_step_refuses_bad_input_by_name(argv, stdin, message):
    done = nasflow("kfp", *argv, stdin=stdin)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
