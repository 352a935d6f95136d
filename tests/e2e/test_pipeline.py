"""The model's life on Katib with the pipeline's own identity: ``nasflow submit --wait
--promote`` (the search, then final training as a Job) as the ServiceAccount
``nasflow-pipeline`` (its token, its Role from manifests/base: a verb missing there fails here),
and ``nasflow pipeline`` run as the CronJob's Job (``kubectl create job
--from=cronjob/nasflow-retrain``): search on Katib, final training and compression as Jobs, a
champion in the host's MLflow registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest
import yaml

from tests.conftest import ROOT
from tests.e2e.conftest import experiment, wait_for

pytestmark = pytest.mark.slow
PIPELINE_SA = ("nasflow-system", "nasflow-pipeline")


def _champion(cluster, model: str) -> str:
    from mlflow.tracking import MlflowClient

    return MlflowClient(cluster.mlflow).get_model_version_by_alias(model, "champion").version


def test_submit_wait_promote_as_the_pipeline_service_account(cluster, tmp_path):
    from devcluster.layout import API_PORT, PKI

    namespace, account = PIPELINE_SA
    token = cluster.kubectl("-n", namespace, "create", "token", account).stdout.strip()
    kubeconfig = tmp_path / "pipeline.kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "pipeline",
        "clusters": [{"name": "dev", "cluster": {"server": f"https://127.0.0.1:{API_PORT}",
                                                 "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": "pipeline", "context": {"cluster": "dev", "user": account}}]}))
    body = experiment("random-digits.yaml", trials=2, parallel=2)
    manifest = tmp_path / "small.yaml"
    manifest.write_text(yaml.safe_dump(body))
    model = f"e2e-submit-{uuid.uuid4().hex[:6]}"
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MLFLOW_TRACKING_URI": cluster.mlflow}
    done = subprocess.run([sys.executable, "-m", "pipeline", "submit", str(manifest), "-n",
                           cluster.namespace, "--wait", "--promote", "--model", model,
                           "--top-k", "1", "--final-epochs", "2", "--timeout", "900"],
                          cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=1000)
    try:
        assert done.returncode == 0, done.stdout + done.stderr
        assert "champion" in done.stdout
        assert _champion(cluster, model) == "1"
    finally:
        cluster.client().delete_experiment(body["metadata"]["name"])


def test_pipeline_runs_as_the_cronjobs_job(cluster, tmp_path):
    model = f"e2e-pipeline-{uuid.uuid4().hex[:6]}"
    config = {"experiment": "experiment.yaml", "name": "e2e-pipe", "namespace": "nasflow",
              "model": model, "timeoutSeconds": 900, "retention": 1,
              "finalize": {"topK": 1, "seeds": 1, "epochs": 2},
              "gates": {"minAccuracy": 0.1},
              "compress": {"variants": "float16", "maxAccuracyDrop": 100}}
    body = experiment("random-digits.yaml", trials=2, parallel=2)
    rendered = yaml.safe_load_all(cluster.kubectl("kustomize", "manifests/pipeline").stdout)
    cronjob = [d for d in rendered if d["kind"] == "CronJob"]
    settings = {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "nasflow-pipeline", "namespace": "nasflow-system"},
                "data": {"pipeline.yaml": yaml.safe_dump(config),
                         "experiment.yaml": yaml.safe_dump(body)}}
    volume = cronjob[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]
    volume["configMap"]["name"] = "nasflow-pipeline"
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all([settings, *cronjob]))
    job = f"e2e-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("-n", "nasflow-system", "create", "job", "--from=cronjob/nasflow-retrain",
                    job)

    def ended():
        status = json.loads(cluster.kubectl("-n", "nasflow-system", "get", "job", job, "-o",
                                            "json").stdout)["status"]
        return status.get("succeeded") or status.get("failed")

    wait_for(f"Job {job}", ended, timeout=1500, every=5)
    status = json.loads(cluster.kubectl("-n", "nasflow-system", "get", "job", job, "-o",
                                        "json").stdout)["status"]
    assert status.get("succeeded") == 1, _pipeline_log(job)
    assert _champion(cluster, model) == "1"


def _pipeline_log(job: str) -> str:
    from devcluster.layout import PODS

    logs = sorted(PODS.glob(f"nasflow-system_{job}-*/pipeline.log"))
    return logs[-1].read_text()[-4000:] if logs else "(no log)"
