"""Everything under manifests/ as a cluster would take it: kustomize renders it, the core kinds
validate against the Kubernetes schemas (offline), every Experiment passes `nasflow validate`,
every pod is locked down, and checkov finds nothing (skips are justified inline)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.cli import main
from tests.conftest import KUBECTL, ROOT

MANIFESTS = ROOT / "manifests"
KUSTOMIZATIONS = sorted(p.parent for p in MANIFESTS.rglob("kustomization.yaml"))
KUBERNETES_VERSION = "1.32.0"
CHECKOV = ROOT / ".venv" / "checkov" / "bin" / "checkov"


def kustomize(directory: Path) -> list[dict[str, Any]]:
    rendered = subprocess.run([KUBECTL, "kustomize", str(directory)], capture_output=True,
                              text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


def plain_documents() -> list[tuple[Path, dict[str, Any]]]:
    docs = []
    for path in sorted(MANIFESTS.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or (path.parent.name == "pipeline" and \
                path.name == "pipeline.yaml"):
            continue
        docs.extend((path, d) for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs a resource creates, including those inside a Katib trial template."""
    spec = doc.get("spec", {})
    kind = doc["kind"]
    if kind == "Experiment":
        return pod_specs(spec["trialTemplate"]["trialSpec"])
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in ("Deployment", "Job"):
        return [spec["template"]["spec"]]
    if kind == "TrainingRuntime":  # Kubeflow Trainer: a JobSet's replicated Jobs
        return [job["template"]["spec"]["template"]["spec"]
                for job in spec["template"]["spec"]["replicatedJobs"]]
    return []


INJECTION = "katib.kubeflow.org/metrics-collector-injection"
CUSTOM_KINDS = ("kubeflow.org/v1beta1", "trainer.kubeflow.org/v1alpha1")  # Katib's, Trainer's


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_servers_run_outside_katibs_pod_webhook(directory):
    """Experiments go to `nasflow`, labelled for Katib's collector injection; the MLflow server
    and the CronJob to `nasflow-system`: Katib's pod webhook intercepts every pod of a labelled
    namespace, so they could not start while katib-controller is down."""
    namespaces = {d["metadata"]["name"]: d["metadata"].get("labels", {})
                  for d in kustomize(MANIFESTS / "base") if d["kind"] == "Namespace"}
    assert namespaces["nasflow"][INJECTION] == "enabled" and INJECTION not in namespaces[
        "nasflow-system"]
    docs = kustomize(directory)
    assert docs
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        namespace = doc["metadata"].get("namespace")
        if (doc["kind"], doc["metadata"]["name"]) == ("ConfigMap", "katib-config"):
            assert namespace == "kubeflow"  # manifests/suggestion: Katib's own config
            continue
        assert namespace in namespaces, doc["metadata"]["name"]
        if doc["kind"] == "Experiment":
            assert namespace == "nasflow"
        if doc["kind"] in ("Deployment", "CronJob"):
            assert INJECTION not in namespaces[namespace], doc["metadata"]["name"]


def test_the_cronjob_never_retries_a_run_and_pulls_versioned_tags_only_if_missing():
    (cronjob,) = [d for d in kustomize(MANIFESTS / "pipeline") if d["kind"] == "CronJob"]
    job = cronjob["spec"]["jobTemplate"]["spec"]
    assert job["backoffLimit"] == 0  # a retry would submit a second experiment
    images = [c for d in (*kustomize(MANIFESTS / "pipeline"), *kustomize(MANIFESTS / "mlflow"))
              for pod in pod_specs(d) for c in pod["containers"]]
    assert images and all(c["imagePullPolicy"] == "IfNotPresent" for c in images)
    config = yaml.safe_load((MANIFESTS / "pipeline" / "pipeline.yaml").read_text())
    assert config["namespace"] == "nasflow"


@pytest.mark.parametrize("path,doc", [(p, d) for p, d in plain_documents()
                                      if d["apiVersion"] not in CUSTOM_KINDS],
                         ids=lambda v: v.name if isinstance(v, Path) else v["kind"])
def test_core_kinds_match_the_kubernetes_schema(path, doc):
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", sorted({p for p, d in plain_documents()
                                         if d["kind"] == "Experiment"}),
                         ids=lambda p: p.name)
def test_every_experiment_passes_nasflow_validate(path, capsys):
    """Valid, runnable on both engines; only nasflow's own algorithms are local-only."""
    assert main(["validate", str(path)]) == 0, capsys.readouterr().out
    for line in capsys.readouterr().out.strip().splitlines():
        assert re.fullmatch(re.escape(str(path)) + r"(#\d+)?: valid( \(not supported by Katib: "
                            r"(algorithm|early stopping) \S+ is nasflow's own: Katib runs it "
                            r"only once nasflow's (suggestion|early-stopping) service is "
                            r"registered \(kubectl apply -k manifests/suggestion\)\))?",
                            line), line


def test_trial_templates_are_jobs_or_trainjobs_that_validate():
    """The Job inside each Experiment is checked like any Job (Katib's webhook round-trips it);
    a TrainJob against Kubeflow Trainer's typed models, field by field."""
    import kubernetes_validate

    from pipeline.validation.trial_trainjob import check_trainjob

    kinds = set()
    for _, doc in plain_documents():
        if doc["kind"] == "Experiment":
            job = {**doc["spec"]["trialTemplate"]["trialSpec"]}
            kinds.add(job["kind"])
            if job["kind"] == "TrainJob":
                assert check_trainjob(job, "node", "trialSpec") == []
                continue
            job["metadata"] = {"name": "trial", **job.get("metadata", {})}
            kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
    assert kinds == {"Job", "TrainJob"}


def test_the_training_runtime_fits_trainers_schema_and_its_nodes_are_jobs():
    """nasflow's TrainingRuntime against Kubeflow Trainer's typed models (no unknown field), and
    each replicated Job it makes against Kubernetes' schema; the node container is the one
    Katib's collector joins (``node``) and carries the multi-worker contract."""
    import kubernetes_validate
    from kubeflow_trainer_api.models import TrainerV1alpha1TrainingRuntime

    from pipeline.validation.trial_trainjob import schema_problems

    (runtime,) = [d for _, d in plain_documents() if d["kind"] == "TrainingRuntime"]
    assert schema_problems(runtime, TrainerV1alpha1TrainingRuntime, "runtime") == []
    jobset = runtime["spec"]["template"]["spec"]
    assert jobset["network"]["enableDNSHostnames"] is True
    assert jobset["failurePolicy"]["maxRestarts"] == 0
    (node,) = jobset["replicatedJobs"]
    assert node["name"] == "node"
    kubernetes_validate.validate({"apiVersion": "batch/v1", "kind": "Job",
                                  "metadata": {"name": "node"}, **node["template"]},
                                 KUBERNETES_VERSION, strict=True)
    (container,) = node["template"]["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "node"
    assert container["ports"] == [{"name": "tf-worker", "containerPort": 2222}]
    env = {e["name"]: e for e in container["env"]}
    assert env["NASFLOW_JOBSET_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['jobset.sigs.k8s.io/jobset-name']"


@pytest.mark.parametrize("path,doc", [(p, d) for p, d in plain_documents() if pod_specs(d)],
                         ids=lambda v: v.name if isinstance(v, Path) else v["metadata"]["name"])
def test_every_pod_is_locked_down(path, doc):
    for pod in pod_specs(doc):
        security = pod["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] >= 10000
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) <= set(resources["limits"])
            tmp = next(m for m in container["volumeMounts"] if m["mountPath"] == "/tmp")
            assert "emptyDir" in volumes[tmp["name"]]


def test_pipeline_role_is_least_privilege():
    roles = {d["metadata"]["name"]: {(tuple(r["apiGroups"]), tuple(r["resources"])):
                                     set(r["verbs"]) for r in d["rules"]}
             for _, d in plain_documents() if d["kind"] == "Role"}
    assert roles["nasflow-pipeline"] == {
        (("kubeflow.org",), ("experiments",)): {"create", "get", "list", "watch", "delete"},
        (("kubeflow.org",), ("trials", "suggestions")): {"get", "list", "watch"},
        (("batch",), ("jobs",)): {"create", "get", "list", "watch"},
        (("trainer.kubeflow.org",), ("trainjobs",)): {"create", "get", "list", "watch"}}
    # Katib's controller: the TrainJobs of TrainJob trials, in nasflow's namespace only
    assert roles["katib-trainjobs"] == {
        (("trainer.kubeflow.org",), ("trainjobs",)): {"create", "get", "list", "watch", "delete"},
        (("trainer.kubeflow.org",), ("trainingruntimes",)): {"get", "list", "watch"}}
    cron = next(d for _, d in plain_documents() if d["kind"] == "CronJob")
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert cron["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"] > yaml.safe_load(
        (MANIFESTS / "pipeline" / "pipeline.yaml").read_text())["timeoutSeconds"]


def test_gpu_overlay_asks_for_one_gpu_per_trial():
    docs = kustomize(MANIFESTS / "experiments" / "cifar10-gpu")
    assert {d["metadata"]["name"] for d in docs} == {"tpe-cifar10", "enas-cifar10", "darts-cifar10"}
    for doc in docs:
        pod = pod_specs(doc)[0]
        assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert pod["containers"][0]["image"] == "nasflow-trial-gpu:0.1.0"
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_pipeline_config_names_a_baked_in_experiment():
    from pipeline.retraining import PipelineConfig

    config = PipelineConfig.load(MANIFESTS / "pipeline" / "pipeline.yaml")
    baked = Path(str(config.experiment).replace("/app/manifests", str(MANIFESTS)))
    assert baked.exists() and config.model == "nasflow-digits"
    assert "COPY manifests /app/manifests" in (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(not CHECKOV.exists(), reason="checkov is installed by `make install` into "
                    ".venv/checkov")
@pytest.mark.parametrize("target,frameworks", [
    (["-d", str(MANIFESTS)], ["kubernetes", "kustomize"]),
    (["-f", str(ROOT / "Dockerfile")], ["dockerfile"])], ids=["manifests", "Dockerfile"])
def test_checkov_finds_no_failed_check(target, frameworks):
    result = subprocess.run(
        [str(CHECKOV), "--quiet", "--compact", "--skip-download", "--output", "json",
         "--framework", *frameworks, *target], capture_output=True, text=True, timeout=600)
    reports = json.loads(result.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    assert sorted(r["check_type"] for r in reports) == frameworks
    failed = [(r["check_type"], c["check_id"], c["file_path"], c.get("resource"))
              for r in reports for c in r["results"]["failed_checks"]]
    assert failed == []
    assert all(r["summary"]["passed"] > 100 for r in reports)


@pytest.mark.parametrize("path,doc", [(p, d) for p, d in plain_documents() if pod_specs(d)],
                         ids=lambda v: v.name if isinstance(v, Path) else v["metadata"]["name"])
def test_mlflow_clients_take_credentials_from_the_secret_and_keep_home(path, doc):
    """Every container that talks to MLflow (trials, the pipeline) reads the optional Secret
    mlflow-credentials as MLFLOW_TRACKING_USERNAME/PASSWORD through secretKeyRef (never a
    literal), and none overrides the images' HOME=/tmp."""
    for pod in pod_specs(doc):
        for container in pod["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            assert "HOME" not in env
            if "MLFLOW_TRACKING_URI" not in env:
                continue
            for name, key in (("MLFLOW_TRACKING_USERNAME", "username"),
                              ("MLFLOW_TRACKING_PASSWORD", "password")):
                assert env[name]["valueFrom"]["secretKeyRef"] == {
                    "name": "mlflow-credentials", "key": key, "optional": True}, (path, name)
