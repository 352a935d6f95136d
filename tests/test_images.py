"""Each image's dependency set, installed alone exactly as the Dockerfile installs it, runs that
image's real entry point end to end.

The venv of a target is built once from the Dockerfile's own ``pip install`` lines and cached in
``.venv/images/<target>-<hash>`` (the hash covers those lines, ``constraints.txt`` and
``pyproject.toml``). Commands run with the image's ``ENV`` lines, ``/tmp`` mapped to a fresh
folder, and the repository's code first on ``PYTHONPATH``: what is under test is the dependency
set, not a stale copy of the code.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from devcluster import dockerfile
from tests.conftest import ROOT
from tests.mlflow_server import free_port, stop_process_group

pytestmark = pytest.mark.slow
CACHE = ROOT / ".venv" / "images"


def install_lines(target: str) -> list[str]:
    """The ``RUN pip install`` lines that build the venv the target copies, in build order."""
    all_stages = dockerfile.stages()
    (source,) = re.findall(r"^COPY --from=(\S+) /opt/venv /opt/venv$", all_stages[target][1],
                           re.M)
    return [line[4:] for stage in dockerfile.chain(source)
            for line in dockerfile.logical_lines(all_stages[stage][1])
            if line.startswith("RUN pip install")]


def image_env(target: str, tmp: Path) -> dict[str, str]:
    """The target's ENV (every stage it is built on), ``/tmp`` mapped to ``tmp``."""
    return {k: v.replace("/tmp", str(tmp)) for k, v in dockerfile.env(target).items()
            if k != "PATH"}


def image_venv(target: str) -> Path:
    lines = install_lines(target)
    digest = hashlib.sha256("\n".join(
        [*lines, (ROOT / "constraints.txt").read_text(), (ROOT / "pyproject.toml").read_text()]
    ).encode()).hexdigest()[:12]
    venv = CACHE / f"{target}-{digest}"
    if (venv / ".complete").exists():
        return venv
    for old in CACHE.glob(f"{target}-*"):  # older versions, or a build that was interrupted
        shutil.rmtree(old)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
           "VIRTUAL_ENV": str(venv)}
    for line in lines:
        subprocess.run(["bash", "-c", line + " -q"], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=1200)
    (venv / ".complete").touch()
    return venv


def run_in_image(target: str, args: list[str], tmp: Path, timeout: float = 300,
                 **extra_env: str) -> subprocess.CompletedProcess:
    venv = image_venv(target)
    pod_tmp = tmp / "pod-tmp"
    pod_tmp.mkdir(exist_ok=True)
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           **image_env(target, pod_tmp), **extra_env}
    return subprocess.run([str(venv / "bin" / "python"), *args], cwd=pod_tmp, env=env,
                          capture_output=True, text=True, timeout=timeout)


def imports(target: str, modules: list[str], tmp: Path) -> dict[str, bool]:
    probe = ("import importlib.util, json, sys; print(json.dumps({m: importlib.util.find_spec(m)"
             " is not None for m in sys.argv[1:]}))")
    result = run_in_image(target, ["-c", probe, *modules], tmp)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_install_lines_are_the_dockerfiles():
    assert install_lines("trial") == ['pip install --no-cache-dir -c constraints.txt ".[trial]"']
    assert install_lines("pipeline") == [
        'pip install --no-cache-dir -c constraints.txt ".[cluster]"',
        'pip install --no-cache-dir --no-deps "kfp==2.17.3"']
    assert install_lines("suggestion") == [
        'pip install --no-cache-dir -c constraints.txt ".[suggestion]"']
    assert install_lines("mlflow") == [
        'pip install --no-cache-dir -c constraints.txt "mlflow[auth]" "psycopg2-binary>=2.9"']
    assert image_env("trial", Path("/pod"))["MLFLOW_TRACKING_URI"] == "file:///pod/mlruns"


TRIAL = ["-m", "trial_image", "--dataset=digits", "--epochs=2", "--filters=8",
         "--experiment-name=images"]
LOAD_BACK = """
import json, sys
import mlflow, numpy as np
from trial_image.data import load
model = mlflow.pyfunc.load_model(sys.argv[1])
data = load("digits")
predicted = np.asarray(model.predict(data.test.x)).argmax(axis=1)
print(json.dumps({"accuracy": float(np.mean(predicted == data.test.y))}))
"""


def test_trial_image_trains_stores_and_reloads_its_model(mlflow_server, tmp_path):
    from mlflow import MlflowClient

    result = run_in_image("trial", [*TRIAL, "--trial-name=image-trial"], tmp_path,
                          MLFLOW_TRACKING_URI=mlflow_server.uri)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Validation-Accuracy=" in result.stdout and "Traceback" not in result.stderr
    client = MlflowClient(mlflow_server.uri)
    experiment = client.get_experiment_by_name("images")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    (run,) = client.search_runs([experiment.experiment_id], "tags.`katib.trial` = 'image-trial'")
    assert run.info.status == "FINISHED"
    # the model loads back with the trial image's own dependencies
    loaded = run_in_image("trial", ["-c", LOAD_BACK, f"runs:/{run.info.run_id}/model"],
                          tmp_path, MLFLOW_TRACKING_URI=mlflow_server.uri)
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    accuracy = json.loads(loaded.stdout.strip().splitlines()[-1])["accuracy"]
    assert accuracy == pytest.approx(run.data.metrics["Test-Accuracy"], abs=1e-6)
    assert not imports("trial", ["kubernetes", "kubeflow_katib_api", "optuna"], tmp_path)[
        "kubernetes"]


def test_trial_image_default_tracking_uri(tmp_path, monkeypatch):
    """Without a tracking server the run goes to the image's /tmp/mlruns; without the opt-in
    that MLflow 3 asks for its file store, the trial fails with exit 4 and one line."""
    from mlflow import MlflowClient

    result = run_in_image("trial", [*TRIAL, "--trial-name=default-uri"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    store = f"file://{tmp_path}/pod-tmp/mlruns"
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(store)
    (run,) = client.search_runs([client.get_experiment_by_name("images").experiment_id])
    assert run.info.status == "FINISHED" and run.data.metrics["Test-Accuracy"] > 0

    refused = run_in_image("trial", [*TRIAL, "--trial-name=refused"], tmp_path,
                           MLFLOW_ALLOW_FILE_STORE="false")
    assert refused.returncode == 4
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("trial failed: opening MLflow at file://") and "Traceback" not in \
        refused.stderr
    assert "Validation-Accuracy" not in refused.stdout  # failed before training


def test_pipeline_image_validates_and_promotes(mlflow_server, tmp_path):
    from tests.test_engine_e2e import small

    documents = {str(p): [d for d in yaml.safe_load_all(p.read_text()) if d]
                 for p in (ROOT / "manifests" / "experiments").rglob("*.yaml")}
    experiments = sorted(p for p, docs in documents.items()
                         if any(d.get("kind") == "Experiment" for d in docs))
    validated = run_in_image("pipeline", ["-m", "pipeline", "validate", *experiments], tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert validated.stdout.count(": valid") == sum(len(documents[p]) for p in experiments)

    # a local search (the laptop's venv) whose best model the pipeline image promotes
    path = small("random-digits.yaml", "image-promote", trials=2, epochs=1, tmp_path=tmp_path)
    workdir = tmp_path / ".nasflow"
    searched = subprocess.run(
        [sys.executable, "-m", "pipeline", "run", path, "--tracking-uri", mlflow_server.uri,
         "--workdir", str(workdir), "--quiet"], cwd=tmp_path, capture_output=True, text=True,
        timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert searched.returncode == 0, searched.stderr[-3000:]
    promoted = run_in_image("pipeline", ["-m", "pipeline", "promote", "image-promote",
                                         "--workdir", str(workdir), "--tracking-uri",
                                         mlflow_server.uri, "--output", "json"], tmp_path)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    assert json.loads(promoted.stdout)["decision"] == "champion"
    available = imports("pipeline", ["tensorflow", "keras", "torch", "sklearn", "kubernetes"],
                        tmp_path)
    assert available == {"tensorflow": False, "keras": False, "torch": False, "sklearn": False,
                         "kubernetes": True}
    # a Kubeflow Pipelines step starts kfp's executor as kfp installs it (no dependencies),
    # beside protobuf 7, then the step's nasflow code
    executor = run_in_image("pipeline", ["-c", "import kfp.dsl.executor_main, google.protobuf, "
                                         "pipeline.kubeflow_pipelines.step as s; "
                                         "print(google.protobuf.__version__)"],
                            tmp_path, _KFP_RUNTIME="true")
    assert executor.returncode == 0, executor.stderr[-2000:]
    assert executor.stdout.startswith("7.")


def test_mlflow_image_serves_health_with_basic_auth(tmp_path):
    """The reference deployment's server: the image's dependencies start MLflow's basic-auth
    app with manifests/mlflow's settings (it exited with "requires the Flask-WTF package")."""
    port = free_port()
    venv = image_venv("mlflow")
    pod_tmp = tmp_path / "pod-tmp"
    pod_tmp.mkdir()
    ini = pod_tmp / "basic_auth.ini"
    ini.write_text((ROOT / "manifests" / "mlflow" / "basic_auth.ini").read_text()
                   + f"database_uri = sqlite:///{pod_tmp}/auth.db\n"
                   + "admin_password = image-test-only-7a2c\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", **image_env("mlflow", pod_tmp),
           "MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "t" * 32}
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    server = subprocess.Popen(
        [str(venv / "bin" / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--app-name", "basic-auth", "--backend-store-uri", f"sqlite:///{pod_tmp}/mlflow.db"],
        cwd=pod_tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    assert r.status == 200 and r.read().strip() == b"OK"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
    finally:
        stop_process_group(server)


def test_suggestion_image_serves_nasflows_algorithms_without_tensorflow(tmp_path):
    """`python -m pipeline.service` in the suggestion image's dependency set: healthy, and
    suggests for Katib (a gRPC client from this venv); the `earlystopping` target, the same
    venv, serves Katib's EarlyStopping API; no TensorFlow, the Kubernetes client (for
    SetTrialStatus)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from pipeline.service.api import api_pb2, api_pb2_grpc
    from tests.test_service import CASES, FakeController, with_parallel

    venv = image_venv("suggestion")
    pod_tmp = tmp_path / "pod-tmp"
    pod_tmp.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "PYTHONPATH": str(ROOT),
           **image_env("suggestion", pod_tmp)}

    @contextlib.contextmanager
    def serving(target: str, probe: str):
        """The target's ENTRYPOINT on a free port of 127.0.0.1, SERVING ``probe``: (channel,
        port)."""
        entrypoint = dockerfile.instruction(target, "ENTRYPOINT")
        port = free_port()
        server = subprocess.Popen([str(venv / "bin" / "python"), *entrypoint[1:], "--host",
                                   "127.0.0.1", "--port", str(port)], cwd=pod_tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(channel).result(timeout=120)
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=probe), timeout=30)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            yield channel, port
        finally:
            stop_process_group(server)

    with serving("suggestion", "manager.v1beta1.Suggestion") as (channel, port):
        controller = FakeController(with_parallel(CASES["pareto-evolution-nas"]), port)
        controller.stub = api_pb2_grpc.SuggestionStub(channel)
        assert len(controller.search(6)) == 6
    # the early-stopping image is the suggestion image with another entry point
    assert dockerfile.stages()["earlystopping"][0] == "suggestion"
    assert dockerfile.instruction("earlystopping", "ENTRYPOINT")[-2:] == ["--serve",
                                                                           "early-stopping"]
    with serving("earlystopping", "manager.v1beta1.EarlyStopping") as (channel, _):
        api_pb2_grpc.EarlyStoppingStub(channel).ValidateEarlyStoppingSettings(
            api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=api_pb2.EarlyStoppingSpec(
                algorithm_name="asha")), timeout=30)
    available = imports("suggestion", ["tensorflow", "keras", "kubernetes", "grpc", "optuna"],
                        tmp_path)
    assert available == {"tensorflow": False, "keras": False, "kubernetes": True,
                         "grpc": True, "optuna": True}
