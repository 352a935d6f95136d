"""The Dockerfile, the Makefile and the experiment manifests agree with the code."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from trial_image.cli import build_parser, normalise_argv

ROOT = Path(__file__).resolve().parent.parent
EXPERIMENTS = sorted((ROOT / "manifests" / "experiments").glob("*-*.yaml"))


def test_dockerfile_installs_exactly_what_make_installs():
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    (docker_line,) = re.findall(r"^RUN (pip install .*)$", dockerfile, re.M)
    (make_line,) = re.findall(r"^TRIAL_INSTALL := (.*)$", makefile, re.M)
    assert docker_line == make_line
    assert "$(TRIAL_INSTALL)" in makefile


def test_dockerfile_runs_unprivileged_on_a_read_only_root():
    dockerfile = (ROOT / "Dockerfile").read_text()
    final = dockerfile[dockerfile.rindex("\nFROM "):]
    assert "FROM python:3.11-slim" in final
    assert re.search(r"^USER 10001$", final, re.M)
    for env in ("PYTHONUNBUFFERED=1", "HOME=/tmp", "KERAS_HOME=/tmp",
                "MLFLOW_TRACKING_URI=file:///tmp"):
        assert env in final
    assert "pip install" not in final and "apt-get" not in final  # nothing built in the last stage


def test_trial_extra_has_no_kubernetes_client():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    trial = extras["optional-dependencies"]["trial"] + extras["dependencies"]
    assert not [d for d in trial if "kubernetes" in d or "katib" in d]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_trial_command_parses(path):
    """Substitute sample values into the trial template; the trial CLI must accept the argv."""
    experiment = yaml.safe_load(path.read_text())
    template = experiment["spec"]["trialTemplate"]
    (container,) = template["trialSpec"]["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:3] == ["python", "-m", "trial_image"]
    samples = {p["name"]: "1" for p in experiment["spec"].get("parameters", [])}
    samples.update({"pooling": "max", "batch_norm": "true", "optimizer": "adam"})
    text = "\n".join(command[3:])
    for parameter in template["trialParameters"]:
        value = samples.get(parameter["reference"], "x")
        text = text.replace("${trialParameters." + parameter["name"] + "}", value)
    assert "${" not in text
    flags, _ = normalise_argv(text.splitlines())
    args = build_parser().parse_args(flags)
    assert args.dataset == "digits"
    assert template["trialSpec"]["metadata"]["labels"]["katib.kubeflow.org/experiment"] == (
        experiment["metadata"]["name"])


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (kustomize) not installed")
def test_experiments_kustomization_sets_image_and_namespace():
    rendered = subprocess.run(["kubectl", "kustomize", str(ROOT / "manifests" / "experiments")],
                              capture_output=True, text=True, check=True).stdout
    docs = list(yaml.safe_load_all(rendered))
    experiments = [d for d in docs if d["kind"] == "Experiment"]
    assert {d["metadata"]["name"] for d in experiments} == {"random-digits", "enas-digits"}
    assert all(d["metadata"]["namespace"] == "nasflow" for d in experiments)
    images = re.findall(r"image: (\S+)", rendered)
    assert images == ["nasflow-trial:latest"] * 2
