"""The Katib client and the cluster commands against recorded Katib objects.

No cluster runs here: the real ``kubernetes`` client talks to :class:`tests.fake_kube.FakeKubeApi`
at the HTTP layer, which serves the Experiment/Trial/Suggestion objects Katib's controllers write
as Katib v0.19.0 wrote them on the development cluster (tests/data/katib/recorded/) and the API
server's error bodies.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
import yaml

from pipeline.cli import main
from pipeline.cluster.client import KatibClient, condition
from pipeline.cluster.errors import ClusterError
from pipeline.promotion.optimal_trial import from_katib
from tests.conftest import ROOT
from tests.fake_kube import DROP, event, gone, status_body
from tests.recorded_katib import (
    EARLY_STOPPED,
    MANIFEST,
    MANIFEST_PATH,
    NS,
    RECORDED,
    experiment,
    outcome,
    trials,
)


@pytest.fixture
def client(fake):
    return KatibClient(namespace=NS, api=fake.api())


# ---- reading Katib's objects -----------------------------------------------------------------

def test_reads_conditions_counts_and_optimal_trial(client):
    exp = client.get_experiment("random-digits")
    assert condition(exp) == "Succeeded"
    assert exp.status.conditions[-1].reason == "ExperimentMaxTrialsReached"
    status = exp.status
    assert (status.trials, status.trials_succeeded, status.trials_failed) == (3, 2, 1)
    optimal = from_katib(exp)
    assert optimal.trial == "random-digits-6d197746" and optimal.namespace == NS
    assert optimal.value == 0.4618055522441864
    assert optimal.maximize and optimal.algorithm == "random"
    assert optimal.assignments["filters"] == "32"


def test_trials_and_suggestion(client, fake):
    found = {name: [condition(t) for t in client.list_trials(name)]
             for name in ("random-digits", "asha-digits", "random-digits-unavailable")}
    assert found == {"random-digits": ["Failed", "Succeeded", "Succeeded"],
                     "asha-digits": ["Succeeded", "EarlyStopped", "EarlyStopped", "Succeeded"],
                     "random-digits-unavailable": ["MetricsUnavailable"]}
    assert fake.requests[-1][2]["labelSelector"] == [
        "katib.kubeflow.org/experiment=random-digits-unavailable"]
    suggestion = client.get_suggestion("random-digits")
    assert suggestion.status.suggestion_count == 3 and condition(suggestion) == "Succeeded"


def test_create_sets_namespace_and_returns_katib_types(client, fake):
    body = copy.deepcopy(MANIFEST)
    body["metadata"]["name"] = "fresh"
    created = client.create_experiment(body)
    assert created.metadata.namespace == NS and created.metadata.resource_version == "101"
    assert created.spec.algorithm.algorithm_name == "random"
    method, path, _ = fake.requests[-1]
    assert (method, path) == ("POST", "/apis/kubeflow.org/v1beta1/namespaces/nasflow/experiments")


# ---- errors: one actionable line each --------------------------------------------------------

def test_already_exists(client):
    with pytest.raises(ClusterError) as err:
        client.create_experiment(copy.deepcopy(MANIFEST))
    assert str(err.value) == ("experiment 'random-digits' already exists in namespace 'nasflow'; "
                              "delete it with `nasflow delete` or give a new name with "
                              "--name-suffix")


@pytest.mark.parametrize("code", [400, 403])
def test_webhook_denial_shows_katibs_reason(client, fake, code):
    fake.deny["bad"] = status_body(code, "BadRequest", (
        'admission webhook "validator.experiment.katib.kubeflow.org" denied the request: '
        "spec.parallelTrialCount must be less than or equal to spec.maxTrialCount"))
    body = copy.deepcopy(MANIFEST)
    body["metadata"]["name"] = "bad"
    with pytest.raises(ClusterError) as err:
        client.create_experiment(body)
    assert str(err.value) == ("Katib rejected experiment 'bad': spec.parallelTrialCount must be "
                              "less than or equal to spec.maxTrialCount")


def test_forbidden_not_found_not_installed(client, fake):
    with pytest.raises(ClusterError, match=r"^experiment 'nope' not found in namespace 'nasflow'$"):
        client.get_experiment("nope")
    fake.forbidden.add("DELETE")
    with pytest.raises(ClusterError, match=r"^forbidden to delete experiment 'random-digits' in "
                       r"namespace 'nasflow': .*cannot create resource.*manifests/base"):
        client.delete_experiment("random-digits")
    fake.katib_installed = False
    with pytest.raises(ClusterError, match=r"^Katib is not installed on this cluster"):
        client.list_experiments()


def test_unreachable_api_server():
    from kubernetes import client as k8s

    from tests.mlflow_server import free_port

    configuration = k8s.Configuration(host=f"http://127.0.0.1:{free_port()}")
    configuration.retries = 0
    api = k8s.CustomObjectsApi(k8s.ApiClient(configuration))
    with pytest.raises(ClusterError, match=r"^cannot reach the Kubernetes API to get experiment "
                       r"'x': .*check your kubeconfig context"):
        KatibClient(namespace=NS, api=api).get_experiment("x")


# ---- waiting: watch with resourceVersion, reconnects, 410, timeout ---------------------------

def test_wait_reconnects_and_resumes_from_the_last_version(client, fake):
    fake.add("experiments", experiment("experimentRunning", version="101"))
    fake.watch_script = [
        [event("MODIFIED", experiment("experimentRunning", version="150"))],
        DROP,  # the connection breaks: watch again from 150
        [gone()],  # 150 expired: read the object again (now 200), watch from there
        [],  # the server closed the watch: reconnect from 200
        [event("MODIFIED", experiment("experiment", version="240"))],
    ]

    def expire(*_):
        fake.add("experiments", experiment("experimentRunning", version="200"))

    seen = []
    fake.watch_script[2] = lambda f, name: (expire(), [gone()])[1]
    result = client.wait("random-digits", timeout=30,
                         on_update=lambda e: seen.append((condition(e),
                                                          e.metadata.resource_version)),
                         reconnect_delay=0)
    assert condition(result) == "Succeeded" and result.metadata.resource_version == "240"
    assert [q["resourceVersion"] for q in fake.watch_requests()] == [
        ["101"], ["150"], ["150"], ["200"], ["200"]]
    assert all(q["fieldSelector"] == ["metadata.name=random-digits"]
               for q in fake.watch_requests())
    assert seen[0] == ("Running", "101") and seen[-1] == ("Succeeded", "240")
    assert ("Running", "200") in seen


def test_wait_times_out_with_advice(client, fake):
    fake.add("experiments", experiment("experimentRunning"))
    with pytest.raises(ClusterError, match=r"timed out after 1 s waiting for experiment "
                       r"'random-digits' \(still Running\); follow it with `nasflow status"):
        client.wait("random-digits", timeout=1, reconnect_delay=0.05)


def test_wait_notices_deletion(client, fake):
    fake.add("experiments", experiment("experimentRunning"))
    fake.watch_script = [[event("DELETED", experiment("experimentRunning", version="300"))]]
    with pytest.raises(ClusterError, match="was deleted while waiting"):
        client.wait("random-digits", timeout=10)


# ---- the CLI ---------------------------------------------------------------------------------

def test_status_and_trials_commands(cli, capsys):
    assert main(["status", "random-digits"]) == 0
    out = capsys.readouterr().out
    assert "random-digits (namespace nasflow): Succeeded (ExperimentMaxTrialsReached" in out
    assert "trials: 3 (2 succeeded, 1 failed, 0 early-stopped, 0 without metrics" in out
    assert "optimal trial: random-digits-6d197746" in out
    assert "Validation-Accuracy: max 0.4618055522441864, min 0.1076388880610466" in out
    rows = {}
    for name in ("random-digits", "asha-digits", "random-digits-unavailable"):
        assert main(["trials", name, "--output", "json"]) == 0
        rows[name] = [(r["name"][-8:], r["status"], r["Validation-Accuracy"])
                      for r in json.loads(capsys.readouterr().out)]
    assert rows == {  # the Failed trial's pod was deleted before its first epoch's line
        "random-digits": [("3623f84b", "Failed", None),
                          ("6d197746", "Succeeded", "0.4618055522441864"),
                          ("80e5347f", "Succeeded", "0.25")],
        "asha-digits": [("be259cc1", "Succeeded", "0.4861111044883728"),
                        ("b36e9907", "EarlyStopped", "0.1076388880610466"),
                        ("ce355f58", "EarlyStopped", "0.1006944477558136"),
                        ("41a05fce", "Succeeded", "0.8506944179534912")],
        "random-digits-unavailable": [("ddf8820d", "MetricsUnavailable", "unavailable")]}


def test_status_watch_reports_progress(cli, capsys):
    cli.add("experiments", experiment("experimentRunning", name="live"))
    cli.watch_script = [[event("MODIFIED", experiment("experiment", name="live",
                                                      version="300"))]]
    assert main(["status", "live", "--watch"]) == 0
    captured = capsys.readouterr()
    assert "0/3 done, 1 running, 0 failed | best - |" in captured.err
    assert "3/3 done, 0 running, 1 failed | best 0.4618 |" in captured.err
    assert "live (namespace nasflow): Succeeded" in captured.out


def test_submit_renames_and_refuses_local_only_algorithms(cli, capsys, tmp_path):
    assert main(["submit", str(MANIFEST_PATH), "--name-suffix", "nightly",
                 "--image", "registry.test/nasflow-trial:1.0"]) == 0
    created = cli.objects[("experiments", NS, "random-digits-nightly")]
    template = created["spec"]["trialTemplate"]["trialSpec"]
    # the MLflow experiment name comes from this label through ${trialSpec.Labels[...]}
    assert template["metadata"]["labels"]["katib.kubeflow.org/experiment"] == \
        "random-digits-nightly"
    assert template["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "registry.test/nasflow-trial:1.0"

    local = copy.deepcopy(MANIFEST)
    local["spec"]["algorithm"] = {"algorithmName": "evolution"}
    path = tmp_path / "evolution.yaml"
    path.write_text(yaml.safe_dump(local))
    assert main(["submit", str(path)]) == 2  # katib-config unreadable here (404): refused
    err = capsys.readouterr().err
    assert "cannot run on Katib" in err and "katib-config could not be read" in err
    assert ("experiments", NS, "evolution-digits") not in cli.objects
    config = yaml.safe_load((ROOT / "manifests/suggestion/katib-config.yaml").read_text())
    cli.add("configmaps", config)  # nasflow's suggestion service registered: submitted
    local["metadata"]["name"] = "evolution-digits"  # a renamed copy names itself in its label
    local["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = "evolution-digits"
    path.write_text(yaml.safe_dump(local))
    assert main(["submit", str(path)]) == 0
    assert ("experiments", NS, "evolution-digits") in cli.objects
    assert main(["submit", str(MANIFEST_PATH), "--name-suffix", "x" * 40]) == 2
    assert main(["submit", str(MANIFEST_PATH), "--no-finalize"]) == 2  # before anything starts
    assert "--no-finalize says what --promote promotes" in capsys.readouterr().err
    assert main(["submit", str(MANIFEST_PATH)]) == 1  # exists already: one line, exit 1
    assert "already exists in namespace 'nasflow'" in capsys.readouterr().err


def test_delete_command(cli, capsys):
    assert main(["delete", "random-digits"]) == 0
    assert ("experiments", NS, "random-digits") not in cli.objects
    assert main(["delete", "random-digits"]) == 1
    assert "not found in namespace 'nasflow'" in capsys.readouterr().err


# ---- the scheduled pipeline ------------------------------------------------------------------

def test_pipeline_submits_waits_promotes_and_prunes(cli, mlflow_server, tmp_path, capsys):
    from tests.test_promotion import trial_run

    label = {"nasflow.dev/pipeline": "random-digits"}
    for day in range(1, 6):  # five finished runs of this pipeline, one still running
        old = experiment("experiment", name=f"random-digits-2611{day:02d}020000",
                         labels=label)
        old["metadata"]["creationTimestamp"] = f"2026-11-{day:02d}T02:00:00Z"
        cli.add("experiments", old)
    stuck = experiment("experimentRunning", name="random-digits-261106020000", labels=label)
    stuck["metadata"]["creationTimestamp"] = "2026-11-06T02:00:00Z"
    cli.add("experiments", stuck)
    cli.add("experiments", experiment("experiment", name="other-261101020000",
                                      labels={"nasflow.dev/pipeline": "other"}))

    def trials_finish(fake, name):
        """Katib runs the trials; the best one logs its run to MLflow."""
        trial_run(mlflow_server.uri, name, f"{name}-6d197746", 0.4618, namespace=NS)
        done = experiment("experiment", name=name, version="900", labels=label)
        fake.objects[("experiments", NS, name)] = done  # what a GET reads from now on
        return [event("MODIFIED", done)]

    cli.watch_script = [trials_finish]
    model = f"pipeline-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": str(MANIFEST_PATH), "namespace": NS, "model": model, "retention": 3,
        "trialImage": "registry.test/nasflow-trial:2.0", "timeoutSeconds": 60,
        "finalize": False, "compress": False}))  # the optimal trial itself (Jobs: test_finalize)
    code = main(["pipeline", "--config", str(config), "--tracking-uri", mlflow_server.uri,
                 "--output", "json"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(capsys.readouterr().out)
    name = result["experiment"]
    assert name.startswith("random-digits-") and len(name) <= 40
    created = cli.objects[("experiments", NS, name)]
    assert created["metadata"]["labels"] == label
    assert result["promotion"]["decision"] == "champion"
    assert result["promotion"]["score"] == 0.4618055522441864
    # retention 3: the new one and the two newest finished; the running one and others stay
    assert sorted(result["deleted"]) == [f"random-digits-2611{d:02d}020000" for d in (1, 2, 3)]
    left = {n for (p, _, n) in cli.objects if p == "experiments"}
    assert {"random-digits-261104020000", "random-digits-261105020000",
            "random-digits-261106020000", "other-261101020000", name} <= left
    assert "random-digits-261101020000" not in left


def test_pipeline_config_errors(tmp_path, capsys):
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"experiment": str(MANIFEST_PATH), "retension": 3}))
    assert main(["pipeline", "--config", str(config)]) == 2
    assert "unknown field(s) retension" in capsys.readouterr().err
    for field, value, said in (("minimizeMetric", "yes", "minimizeMetric: 'yes' is not true or "
                                "false"), ("gates", {"minAccuracy": "x"},
                                           "gates.minAccuracy: 'x' is not float")):
        config.write_text(yaml.safe_dump({"experiment": str(MANIFEST_PATH), field: value}))
        assert main(["pipeline", "--config", str(config)]) == 2
        assert capsys.readouterr().err.strip() == f"{config}: {said}"  # the file named once


@pytest.mark.parametrize("recording", ["random-digits", "asha-digits"])
def test_status_ends_mlflow_runs_that_katib_ended_trials_left_running(cli, mlflow_server,
                                                                        capsys, recording):
    """A trial Katib failed (its pod deleted) or stopped early whose process could not end its
    run: `nasflow status` ends it, FAILED or KILLED, with Katib's reason; other runs are left."""
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server.uri)
    existing = client.get_experiment_by_name(recording)
    experiment_id = existing.experiment_id if existing else client.create_experiment(recording)
    found = {"random-digits": RECORDED, "asha-digits": EARLY_STOPPED}[recording]
    phases = {t["metadata"]["name"]: outcome(t) for t in trials(found)}
    runs = {trial: client.create_run(experiment_id, run_name=trial, tags={
        "katib.experiment": recording, "katib.trial": trial,
        "katib.namespace": NS}).info.run_id for trial in phases}
    assert main(["status", recording, "--tracking-uri", mlflow_server.uri]) == 0
    err = capsys.readouterr().err
    status = {"Failed": "FAILED", "EarlyStopped": "KILLED"}
    ended = {trial for trial, phase in phases.items() if phase in status}
    assert len(ended) == {"random-digits": 1, "asha-digits": 2}[recording]
    assert err.strip().endswith(", ".join(sorted(ended)))
    for trial, run_id in runs.items():
        run = client.get_run(run_id)
        expected = status.get(phases[trial], "RUNNING")
        assert run.info.status == expected, (trial, phases[trial])
        if expected == "FAILED":
            assert "Katib trial Failed: TrialFailed" in run.data.tags["nasflow.failure_reason"]
    for run_id in runs.values():  # the shared server keeps no run RUNNING for later tests
        client.set_terminated(run_id)
