"""The Dockerfile, the Makefile and the experiment manifests agree with the code."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
import yaml

from tests.conftest import KUBECTL, ROOT
from trial_image.cli import build_darts_parser, build_parser, normalise_argv

EXPERIMENTS = sorted((p, i) for p in (ROOT / "manifests" / "experiments").rglob("*.yaml")
                     for i, d in enumerate(yaml.safe_load_all(p.read_text()))
                     if d and d.get("kind") == "Experiment")


def test_dockerfile_installs_exactly_what_make_installs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    (docker_line,) = re.findall(r"^RUN (pip install .*\.\[trial\].*)$", dockerfile, re.M)
    (make_line,) = re.findall(r"^TRIAL_INSTALL := (.*)$", makefile, re.M)
    assert docker_line == make_line
    assert "$(TRIAL_INSTALL)" in makefile


def test_make_run_tells_the_whole_story():
    """`make run` is what test_story.py runs: search, final training, promotion, compression;
    resumable."""
    (command,) = re.findall(r"^run: install\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert command == "$(BIN)/nasflow run --resume --finalize --promote --compress"


def _stages(dockerfile: str) -> dict[str, str]:
    parts = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    return {part.split("\n", 1)[0].split(" AS ")[1]: part for part in parts}


@pytest.mark.parametrize("target", ["trial", "trial-gpu", "pipeline", "suggestion", "mlflow"])
def test_every_image_runs_unprivileged_on_a_read_only_root(target):
    stages = _stages((ROOT / "Dockerfile").read_text())
    runtime, final = stages["runtime"], stages[target]
    assert runtime.startswith("python:3.11-slim AS runtime")
    assert final.startswith(f"runtime AS {target}")
    assert re.search(r"^USER 10001$", final, re.M)
    for env in ("PYTHONUNBUFFERED=1", "HOME=/tmp", "KERAS_HOME=/tmp"):
        assert env in runtime
    # nothing is built in a final stage: the venv comes from its build stage
    assert "pip install" not in final + runtime and "apt-get" not in final + runtime
    if target.startswith("trial"):
        assert "MLFLOW_TRACKING_URI=file:///tmp" in final


def test_pipeline_commands_need_no_training_stack():
    """The pipeline image installs `.[cluster]` only: its commands import no TensorFlow, Keras,
    torch, matplotlib or scikit-learn."""
    script = textwrap.dedent(f"""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {{"tensorflow", "keras", "torch", "matplotlib",
                                           "sklearn", "cmaes"}}:
                    raise ImportError("not in the pipeline image: " + name)
        sys.meta_path.insert(0, Block())
        from pipeline.cli import main
        import pipeline.retraining, pipeline.cluster.client, pipeline.promotion.registry
        code = main(["validate", {str(ROOT / "manifests/experiments/enas-digits.yaml")!r}])
        assert code == 0, code
        main(["pipeline", "--help"])
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: nasflow pipeline" in result.stdout


def test_cluster_extra_is_what_the_pipeline_image_installs():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cluster = project["optional-dependencies"]["cluster"]
    assert {re.split(r"[<>=]", d)[0] for d in cluster} == {
        "kubernetes", "kubeflow-katib-api", "kubeflow-trainer-api", "mlflow-skinny", "optuna"}
    assert "nasflow[cluster]" in project["optional-dependencies"]["pipeline"]
    assert 'pip install --no-cache-dir -c constraints.txt ".[cluster]"' in (
        ROOT / "Dockerfile").read_text()


def test_trial_extra_has_no_kubernetes_client():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    trial = extras["optional-dependencies"]["trial"] + extras["dependencies"]
    assert not [d for d in trial if "kubernetes" in d or "katib" in d]


@pytest.mark.parametrize(("path", "document"), EXPERIMENTS,
                         ids=[f"{p.name}#{i + 1}" for p, i in EXPERIMENTS])
def test_experiment_trial_command_parses(path, document):
    """Substitute sample values into the trial template; the trial CLI must accept the argv."""
    experiment = list(yaml.safe_load_all(path.read_text()))[document]
    template = experiment["spec"]["trialTemplate"]
    if template["trialSpec"]["kind"] == "TrainJob":
        command = template["trialSpec"]["spec"]["trainer"]["command"]
    else:
        (container,) = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
        command = container["command"]
    assert command[:3] == ["python", "-m", "trial_image"]
    samples = {p["name"]: p["feasibleSpace"]["list"][0] if "list" in p["feasibleSpace"]
               else p["feasibleSpace"]["min"] for p in experiment["spec"].get("parameters", [])}
    text = "\n".join(command[3:])
    for parameter in template["trialParameters"]:
        value = samples.get(parameter["reference"], "x")
        text = text.replace("${trialParameters." + parameter["name"] + "}", value)
    assert "${" not in text
    argv = text.splitlines()
    darts = argv[0] == "darts"
    flags, _ = normalise_argv(argv[1:] if darts else argv)
    args = (build_darts_parser() if darts else build_parser()).parse_args(flags)
    assert darts == (experiment["spec"]["algorithm"]["algorithmName"] == "darts")
    # the file name says which data: digits, cifar10, a folder on a PVC, shards in S3, a
    # bundled table, text or series
    named = {"digits": "digits", "cifar10": "cifar10", "folder-pvc": "dir:/",
             "shards-s3": "tfrecord:s3://", "breast-cancer": "breast_cancer", "wine": "wine",
             "diabetes": "diabetes", "tickets": "tickets", "sensor": "sensor"}
    assert any(key in path.name and args.dataset.startswith(value)
               for key, value in named.items()), (path.name, args.dataset)
    assert template["trialSpec"]["metadata"]["labels"]["katib.kubeflow.org/experiment"] == (
        experiment["metadata"]["name"])


def test_experiments_kustomization_sets_image_and_namespace():
    rendered = subprocess.run([KUBECTL, "kustomize", str(ROOT / "manifests" / "experiments")],
                              capture_output=True, text=True, check=True).stdout
    docs = list(yaml.safe_load_all(rendered))
    experiments = [d for d in docs if d["kind"] == "Experiment"]
    assert {d["metadata"]["name"] for d in experiments} == {
        "random-digits", "tpe-digits", "enas-digits", "darts-digits"}
    assert all(d["metadata"]["namespace"] == "nasflow" for d in experiments)
    images = re.findall(r"image: (\S+)", rendered)
    assert images == ["nasflow-trial:0.1.0"] * 4


def test_the_repository_stands_alone():
    """No tracked file reads anything beside the repository (the development machines have a
    shared folder beside the checkout; a user's clone does not)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    outside = re.compile(r"\.\./" + "shared|parent\\s*/\\s*[\"']" + "shared")
    offenders = []
    for name in tracked:
        path = ROOT / name
        if path.suffix in (".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg", "") and \
                path.is_file() and outside.search(path.read_text(errors="replace")):
            offenders.append(name)
    assert offenders == []
