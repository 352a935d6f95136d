"""Final training, gates and the fair champion/challenger comparison.

The cluster path runs against the recorded-Katib fake (tests/fake_kube.py), with a stand-in
kubelet that runs each final Job's container command as a local process: real training, a real
MLflow server. The local path (``nasflow run --finalize --promote``) is in test_story.py.
"""

from __future__ import annotations

import copy
import json
import sys
import uuid

import mlflow
import pytest
import yaml
from kubeflow_katib_api.models import V1beta1Experiment
from mlflow import MlflowClient

from pipeline.cli import main
from pipeline.cluster.client import KatibClient
from pipeline.finalize.candidates import Candidate
from pipeline.finalize.errors import FinalizeError
from pipeline.finalize.plan import FINAL, SELECTION, FinalRun, Schedule, selection_runs
from pipeline.finalize.runners import ClusterRunner
from pipeline.promotion.gates import Gates
from pipeline.promotion.registry import Registry
from pipeline.retraining import ConfigError, PipelineConfig
from tests.conftest import ROOT
from tests.fake_kube import PATH, event
from tests.recorded_katib import (
    MANIFEST,
    MANIFEST_PATH,
    NS,
    RECORDED,
    experiment,
    outcome,
    trials,
)
from tests.test_promotion import optimal, trial_run

# a full assignment of random-digits.yaml's parameters, less the three candidate() sets
FULL = {"kernel_size": "3", "pooling": "max", "batch_norm": "true", "dense_units": "0",
        "dropout": "0.1", "optimizer": "adam", "batch_size": "64"}


def candidate(trial_name: str = "t1", **assignments: str) -> Candidate:
    return Candidate(trial_name, {"num_blocks": "2", "filters": "32", "learning_rate": "0.003",
                                  **FULL, **assignments}, 0.98)


# ---- the plan ----------------------------------------------------------------------------------

def test_run_names_are_stable_valid_and_change_with_their_inputs():
    schedule = Schedule()
    a = FinalRun("random-digits-261128020000", candidate(), SELECTION, 0, schedule, "m")
    assert a.name == FinalRun("random-digits-261128020000", candidate(), SELECTION, 0,
                              Schedule(top_k=9, seeds=5), "m").name  # same training
    assert a.name.startswith("random-digits-261128020000-select-") and len(a.name) <= 63
    others = {FinalRun(a.experiment, candidate(), SELECTION, 1, schedule, "m").name,
              FinalRun(a.experiment, candidate(), FINAL, 0, schedule, "m").name,
              FinalRun(a.experiment, candidate(filters="64"), SELECTION, 0, schedule, "m").name,
              FinalRun(a.experiment, candidate(), SELECTION, 0, Schedule(epochs=31), "m").name}
    assert len(others) == 4 and a.name not in others


def test_selection_flags_keep_the_test_split_out_and_the_final_flags_bring_it_in():
    schedule = Schedule(top_k=2, seeds=2, epochs=7)
    runs = selection_runs("e", [candidate("t1"), candidate("t2"), candidate("t3")], schedule,
                          "model-x")
    assert [(r.candidate.trial, r.seed) for r in runs] == [("t1", 0), ("t1", 1), ("t2", 0),
                                                          ("t2", 1)]
    flags = runs[1].flags()
    assert {"--epochs=7", "--patience=7", "--lr-schedule=cosine", "--augment=light",
            "--seed=1", "--role=selection", "--source-trial=t1", "--skip-test",
            "--experiment-name=e", f"--trial-name={runs[1].name}"} == set(flags)
    final = FinalRun("e", candidate("t2"), FINAL, 0, schedule, "model-x").flags()
    assert "--skip-test" not in final and "--train-on=train+validation" in final
    assert "--evaluate-model=models:/model-x@champion" in final and "--role=final" in final


@pytest.mark.parametrize("bad, message", [
    ({"top_k": 0}, "at least 1"), ({"epochs": 0}, "at least 1"),
    ({"lr_schedule": "step"}, "'step' is not one of"), ({"augment": "heavy"}, "'heavy'")])
def test_schedule_refuses_what_the_trial_image_cannot_do(bad, message):
    with pytest.raises(ValueError, match=message):
        Schedule(**bad)


class Loaded(Exception):
    """Stops the trial right after its data loader was called."""


@pytest.mark.parametrize("flags, test", [
    ([], True),
    (FinalRun("e", candidate(), SELECTION, 0, Schedule(), "m").flags(), False),
    (FinalRun("e", candidate(), FINAL, 0, Schedule(), "m").flags(), True)])
def test_what_the_trial_asks_its_data_loader_for(monkeypatch, flags, test):
    """A selection run never asks for the test split: the winner is fixed without it."""
    from trial_image import cli, data

    calls = []

    def load(request, test=True):
        calls.append((request, test))
        raise Loaded

    monkeypatch.setattr(data.DataRequest, "load", load)
    argv, per_block = cli.normalise_argv(["--dataset=digits", *flags])
    with pytest.raises(Loaded):
        cli.run(cli.build_parser().parse_args(argv), per_block)
    assert calls == [(data.DataRequest(), test)]


def test_the_splits_each_role_trains_and_tests_on():
    from trial_image import data

    selection = data.load("digits", test=False)
    assert selection.test is None
    assert [s.name for s in selection.splits] == ["train", "validation"]
    final = data.load("digits").merged()
    assert [s.name for s in final.splits] == ["train+validation", "test"]
    assert not final.has_validation
    assert len(final.train.x) == len(selection.train.x) + len(selection.validation.x) == 1437
    assert len(final.test.x) == 360


# ---- rendering the final Job -----------------------------------------------------------------

def katib_experiment(name: str = "random-digits-261128020000") -> V1beta1Experiment:
    obj = experiment("experiment", name=name)
    obj["metadata"]["uid"] = "uid-1234"
    return V1beta1Experiment.from_dict(obj)


def test_final_job_is_the_trial_template_plus_the_final_flags(fake):
    client = KatibClient(namespace=NS, api=fake.api())
    runner = ClusterRunner(client, katib_experiment(), parallel=2, timeout=60,
                           image="registry.test/nasflow-trial:3.0")
    run = FinalRun("random-digits-261128020000", candidate("random-digits-x7k2m9qp"), FINAL, 0,
                   Schedule(), "nasflow-digits")
    job = runner.job(run)
    template = RECORDED["experiment"]["spec"]["trialTemplate"]["trialSpec"]
    assert job["metadata"]["name"] == run.name
    assert job["metadata"]["labels"] == {"nasflow.dev/finalize": "random-digits-261128020000",
                                         "nasflow.dev/role": "final"}  # no katib.kubeflow.org/
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "kubeflow.org/v1beta1", "kind": "Experiment",
        "name": "random-digits-261128020000", "uid": "uid-1234"}]
    assert job["spec"]["backoffLimit"] == 0
    pod, original = job["spec"]["template"]["spec"], template["spec"]["template"]["spec"]
    for key in ("securityContext", "volumes", "restartPolicy", "automountServiceAccountToken"):
        assert pod[key] == original[key]
    (container,), (source,) = pod["containers"], original["containers"]
    assert container["image"] == "registry.test/nasflow-trial:3.0"
    for key in ("resources", "env", "securityContext", "volumeMounts"):
        assert container[key] == source[key]
    assert container["command"][:6] == ["python", "-m", "trial_image", "--dataset=digits",
                                        "--epochs=4", "--num-blocks=2"]  # recorded: made small
    assert container["command"][-len(run.flags()):] == run.flags()

    other = copy.deepcopy(MANIFEST)
    other["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]["containers"][0][
        "command"] = ["sh", "-c", "train.sh"]
    other["metadata"]["name"] = "x"
    runner = ClusterRunner(client, V1beta1Experiment.from_dict(other), 1, 60)
    with pytest.raises(FinalizeError, match="needs the trial template to run nasflow's trial"):
        runner.job(run)


# ---- nasflow pipeline: submit -> wait -> finalize (Jobs) -> promote -> prune -------------------

class Kubelet:
    """Plays the Job controller and kubelet, and Kubeflow Trainer's controller: a created Job's
    container command runs as a local process, a TrainJob's trainer command as ``numNodes``
    local workers (real training, logging to the test's MLflow); the end comes as a watch
    event."""

    def __init__(self, fake, tracking_uri: str, tmp_path, fail: bool = False) -> None:
        self.fake, self.uri, self.tmp, self.fail = fake, tracking_uri, tmp_path, fail
        self.status: dict[str, dict] = {}
        self.started: list[str] = []
        self.plurals: dict[str, str] = {}
        fake.on_create["jobs"] = fake.on_create["trainjobs"] = self.create

    def create(self, fake, job: dict) -> None:
        from pipeline.engine.workers import LocalWorkers

        name = job["metadata"]["name"]
        self.started.append(name)
        if job["kind"] == "TrainJob":
            self.plurals[name] = "trainjobs"
            container = job["spec"]["trainer"]
            nodes = container.get("numNodes", 1)
        else:
            self.plurals[name] = "jobs"
            container, nodes = job["spec"]["template"]["spec"]["containers"][0], 1
        argv = [sys.executable if a == "python" else a for a in container["command"]]
        env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(self.tmp),
               "MLFLOW_TRACKING_URI": self.uri,
               **{e["name"]: e["value"] for e in container.get("env", []) if "value" in e}}
        code, tail = 1, "ImagePullBackOff"
        if not self.fail:
            pod = self.tmp / "pods" / name
            pod.mkdir(parents=True)
            with open(pod / "node-0.log", "wb") as log:
                workers = LocalWorkers(argv, env, ROOT, pod, log, nodes, 10.0)
                code = workers.wait()
            tail = (pod / "node-0.log").read_text().strip().splitlines()[-1:]
        ok = code == 0
        self.status[name] = {"conditions": [{
            "type": "Complete" if ok else "Failed", "status": "True",
            "reason": "" if ok else "BackoffLimitExceeded",
            "message": "" if ok else f"Job has reached the specified backoff limit ({tail})"}]}

    def watch(self, fake, name: str) -> list[dict]:
        job = fake.objects[(self.plurals[name], NS, name)]
        fake.version += 1
        job["metadata"]["resourceVersion"] = str(fake.version)
        job["status"] = self.status[name]
        return [event("MODIFIED", job)]


def searched(fake, mlflow_server, run_spec: dict | None = None):
    """The watch script of the experiment: Katib ran the recorded trials, as Jobs or as
    ``run_spec`` says."""

    def trials_finish(fake, name):
        created = fake.objects[("experiments", NS, name)]
        done = experiment("experiment", name=name, version="900",
                          labels=created["metadata"].get("labels"))
        done["metadata"]["uid"] = created["metadata"]["uid"]
        done["spec"] = created["spec"]
        fake.objects[("experiments", NS, name)] = done
        for obj in trials():
            obj = yaml.safe_load(yaml.safe_dump(obj).replace("random-digits", name))
            if run_spec:
                obj["spec"].update(runSpec=run_spec, primaryContainerName="node")
            fake.add("trials", obj)
            if outcome(obj) == "Succeeded":
                trial_run(mlflow_server.uri, name, obj["metadata"]["name"], 0.97, namespace=NS)
        return [event("MODIFIED", done)]

    return trials_finish


def pipeline_config(tmp_path, model: str, **extra) -> str:
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": str(MANIFEST_PATH), "namespace": NS, "model": model,
        "trialImage": "registry.test/nasflow-trial:2.0", "timeoutSeconds": 300,
        "finalize": {"topK": 2, "seeds": 1, "epochs": 2}, "compress": False, **extra}))
    return str(config)


@pytest.mark.slow
def test_pipeline_trains_the_final_model_as_jobs_and_promotes_it(cli, mlflow_server, tmp_path,
                                                                  capsys):
    kubelet = Kubelet(cli, mlflow_server.uri, tmp_path)
    cli.watch_script = [searched(cli, mlflow_server)] + [kubelet.watch] * 4
    model = f"final-{uuid.uuid4().hex[:6]}"
    # the recorded trials' sgd and rmsprop need more than 2 epochs to pass the accuracy gate
    code = main(["pipeline", "--config", pipeline_config(tmp_path, model, gates={
        "minAccuracy": 0.3, "maxParameters": 10_000_000}, finalize={
        "topK": 2, "seeds": 1, "epochs": 12}, compress={
        "variants": "int8-full", "maxAccuracyDrop": 100}), "--tracking-uri", mlflow_server.uri,
        "--output", "json"])
    err = capsys.readouterr()
    assert code == 0, err.err[-3000:]
    result = json.loads(err.out)
    name = result["experiment"]

    # two selection Jobs (the two best succeeded trials), one final Job, then the new
    # champion's compression Job
    jobs = {n: obj for (plural, _, n), obj in cli.objects.items() if plural == "jobs"}
    assert sorted(jobs) == sorted(kubelet.started) and len(jobs) == 4, json.dumps(result)[-3000:]
    compress = jobs.pop(kubelet.started.pop())
    assert compress["metadata"]["labels"]["nasflow.dev/compress"] == name
    assert compress["spec"]["template"]["spec"]["containers"][0]["command"][:4] == [
        "python", "-m", "trial_image", "compress"]
    roles = [jobs[n]["metadata"]["labels"]["nasflow.dev/role"] for n in kubelet.started]
    assert roles == ["selection", "selection", "final"]
    sources = [next(a for a in jobs[n]["spec"]["template"]["spec"]["containers"][0]["command"]
                    if a.startswith("--source-trial=")) for n in kubelet.started]
    assert sources[:2] == [f"--source-trial={name}-6d197746", f"--source-trial={name}-80e5347f"]
    for job in jobs.values():
        assert job["metadata"]["ownerReferences"][0]["uid"] == \
            cli.objects[("experiments", NS, name)]["metadata"]["uid"]
        assert job["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "registry.test/nasflow-trial:2.0"
    # each Job was followed with a watch on that Job
    watched = [q["fieldSelector"][0] for m, path, q in cli.requests
               if m == "GET" and q.get("watch") == ["true"] and path.endswith("/jobs")]
    assert watched == [f"metadata.name={n}" for n in [*kubelet.started,
                                                        compress["metadata"]["name"]]]

    final = result["final"]
    assert final["winner"] in (f"{name}-6d197746", f"{name}-80e5347f")
    assert sources[2] == f"--source-trial={final['winner']}"
    assert [row["run"] for row in final["selection"]] == kubelet.started[:2]
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(final["final_run"])
    assert run.data.tags["nasflow.role"] == "final"
    assert run.data.tags["katib.trial"] == kubelet.started[2]
    assert run.data.metrics["Test-Accuracy"] == final["test_score"]
    promotion = result["promotion"]
    assert promotion["decision"] == "champion" and promotion["score"] == final["test_score"]
    version = client.get_model_version(model, promotion["version"])
    assert version.run_id == final["final_run"] and version.tags["nasflow.gates"] == "passed"
    (variant,) = result["compression"]
    assert variant["variant"] == "int8-full" and variant["version"] is not None
    assert client.get_registered_model(model).aliases == {"champion": promotion["version"]}
    assert client.get_registered_model(f"{model}-variants").aliases == {
        "int8-full": variant["version"]}
    assert allowed_by_the_pipeline_role(cli.requests)


def allowed_by_the_pipeline_role(requests: list) -> bool:
    """Every request the pipeline made is one manifests/base/rbac.yaml's Role allows."""
    role = yaml.safe_load((ROOT / "manifests/base/rbac.yaml").read_text().split("---")[0])
    allowed = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    for method, path, query in requests:
        group, plural, named = PATH.match(path).group("group", "plural", "name")
        verb = {"POST": "create", "DELETE": "delete"}.get(method) or (
            "get" if named else "watch" if query.get("watch") == ["true"] else "list")
        assert (group, plural, verb) in allowed, (method, path)
    return True


def test_a_failed_final_job_fails_the_pipeline_with_its_reason(cli, mlflow_server, tmp_path,
                                                              capsys):
    kubelet = Kubelet(cli, mlflow_server.uri, tmp_path, fail=True)
    cli.watch_script = [searched(cli, mlflow_server)] + [kubelet.watch] * 2
    code = main(["pipeline", "--config", pipeline_config(tmp_path, "never-promoted"),
                 "--tracking-uri", mlflow_server.uri])
    err = capsys.readouterr().err
    assert code == 1
    assert "every selection run failed" in err and "BackoffLimitExceeded" in err
    assert "ImagePullBackOff" in err and "Traceback" not in err
    assert MlflowClient(mlflow_server.uri).search_registered_models(
        "name = 'never-promoted'") == []


@pytest.mark.parametrize("section, message", [
    ({"finalize": {"topk": 3}}, "finalize: unknown field(s) topk"),
    ({"finalize": {"epochs": "many"}}, "finalize.epochs: 'many' is not int"),
    ({"finalize": {"epochs": 2.5}}, "finalize.epochs: 2.5 is not int"),
    ({"finalize": {"augment": "heavy"}}, "finalize: augmentation 'heavy' is not one of"),
    ({"finalize": "yes"}, "finalize: a mapping of topK"),
    ({"gates": {"minAccuracy": True}}, "gates.minAccuracy: True is not float"),
    ({"gates": {"maxLatency": 3}}, "gates: unknown field(s) maxLatency")])
def test_pipeline_config_names_the_bad_finalize_or_gate_field(tmp_path, section, message):
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({"experiment": str(MANIFEST_PATH), **section}))
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PipelineConfig.load(config)


def test_pipeline_config_finalize_and_gates():
    config = PipelineConfig.load(ROOT / "manifests/pipeline/pipeline.yaml")
    assert config.schedule == Schedule()  # final training by default
    assert config.gates == Gates(min_accuracy=0.98, max_latency_ms=None, max_parameters=None)


# ---- gates and the fair comparison -------------------------------------------------------------

@pytest.fixture
def registry(mlflow_server):
    mlflow.set_tracking_uri(mlflow_server.uri)
    return Registry(mlflow_server.uri, f"gated-{uuid.uuid4().hex[:8]}")


@pytest.mark.parametrize("gates, reason", [
    (Gates(min_accuracy=0.99), "min-accuracy: Test-Accuracy 0.95 < 0.99"),
    (Gates(max_latency_ms=2.0), "max-latency-ms: Inference-Latency-Ms 3.5 > 2"),
    (Gates(max_parameters=50_000), "max-parameters: Parameter-Count 120000 > 50000")])
def test_each_gate_keeps_a_better_model_challenger_with_its_reason(mlflow_server, registry,
                                                                   gates, reason):
    exp = f"exp-{uuid.uuid4().hex[:6]}"
    metrics = {"Inference-Latency-Ms": 3.5, "Parameter-Count": 120_000}
    trial_run(mlflow_server.uri, exp, "first", 0.90, metrics=metrics)
    trial_run(mlflow_server.uri, exp, "better", 0.96, metrics=metrics)
    assert registry.promote(optimal(exp, "first", 0.90)).decision == "champion"
    decision = registry.promote(optimal(exp, "better", 0.96), gates=gates)
    assert (decision.decision, decision.champion, decision.reason) == ("challenger", "1", reason)
    tags = registry.client.get_model_version(registry.model, decision.version).tags
    assert tags["nasflow.gates"] == "failed" and tags["nasflow.reason"] == reason
    assert tags["nasflow.decision"] == "challenger"
    # a later promotion without gates does not crown the gated version either
    trial_run(mlflow_server.uri, exp, "plain", 0.91)
    assert registry.promote(optimal(exp, "plain", 0.91)).decision == "champion"
    assert dict(registry.client.get_registered_model(registry.model).aliases)[
        "champion"] == "3"


def test_a_first_model_failing_a_gate_is_no_champion(mlflow_server, registry):
    exp = f"exp-{uuid.uuid4().hex[:6]}"
    trial_run(mlflow_server.uri, exp, "only", 0.90)
    decision = registry.promote(optimal(exp, "only", 0.90), gates=Gates(min_accuracy=0.95))
    assert (decision.decision, decision.champion) == ("challenger", "")
    assert decision.reason == "min-accuracy: Test-Accuracy 0.89 < 0.95"
    assert dict(registry.client.get_registered_model(registry.model).aliases) == {
        "challenger": "1"}


def final_run(uri: str, exp: str, trial_name: str, accuracy: float, model: str,
              champion: tuple[str, float] | None) -> None:
    """A final run as the trial image logs it, with the champion measured on its test split."""
    metrics = {"Test-Accuracy": accuracy}
    tags = {"nasflow.role": "final"}
    if champion:
        metrics["Champion-Test-Accuracy"] = champion[1]
        tags["nasflow.compared_with"] = f"models:/{model}/{champion[0]}"
    trial_run(uri, exp, trial_name, accuracy, metrics=metrics, tags=tags)


def test_promotion_compares_with_the_champion_on_the_challengers_test_split(mlflow_server,
                                                                           registry):
    """The champion scored 0.99 on last month's data; on this month's it scores 0.93. A new
    model with 0.95 on this month's data is better, though 0.95 < 0.99."""
    uri, exp, model = mlflow_server.uri, f"exp-{uuid.uuid4().hex[:6]}", registry.model
    final_run(uri, exp, "m1", 0.99, model, None)
    first = registry.promote(registry.final_trial(exp, "default"))
    assert (first.decision, first.same_data) == ("champion", False)

    final_run(uri, f"{exp}-b", "m2", 0.95, model, ("1", 0.93))
    fair = registry.promote(registry.final_trial(f"{exp}-b", "default"))
    assert (fair.decision, fair.previous_champion, fair.same_data) == ("champion", "1", True)
    assert fair.champion_score == 0.93

    final_run(uri, f"{exp}-c", "m3", 0.96, model, ("2", 0.97))  # the champion is better here
    worse = registry.promote(registry.final_trial(f"{exp}-c", "default"))
    assert (worse.decision, worse.champion, worse.same_data) == ("challenger", "2", True)
    assert worse.champion_score == 0.97
    assert worse.reason == "not better than champion version 2 by 0 on the same test split"

    from pipeline.cli.promote import decision_line

    line = decision_line(worse, registry.final_trial(f"{exp}-c", "default"), "Test-Accuracy")
    assert line.endswith("champion stays version 2 (Test-Accuracy = 0.97 on the same test "
                         "split)")


# ---- a final run that did not train is caught, not promoted --------------------------------

class ScriptedTrials:
    """A Runner whose 'trials' log the MLflow runs a real trial would (tags, per-epoch curves,
    test accuracy), with the training curve the test scripts for each (candidate, role, seed):
    what a stalled optimiser looks like from MLflow, which is all final training reads."""

    def __init__(self, uri: str, experiment_name: str, stalled: set[tuple[str, str, int]],
                 best_epoch: int = 5):
        self.uri, self.experiment, self.stalled = uri, experiment_name, stalled
        self.best_epoch = best_epoch  # where each selection run's validation curve peaks
        self.ran: list[str] = []
        self.runs: list[FinalRun] = []

    def run(self, runs):
        client = MlflowClient(self.uri)
        found = client.get_experiment_by_name(self.experiment)
        exp_id = found.experiment_id if found else client.create_experiment(self.experiment)
        for run in runs:
            self.ran.append(run.name)
            self.runs.append(run)
            stalled = (run.candidate.trial, run.role, run.seed) in self.stalled
            logged = client.create_run(exp_id, tags={
                "katib.experiment": self.experiment, "katib.trial": run.name,
                "nasflow.role": run.role, "nasflow.source_trial": run.candidate.trial})
            rid = logged.info.run_id
            end = 0.75 if stalled else 0.995
            for epoch in range(5):
                client.log_metric(rid, "Training-Accuracy", end - 0.1 * (4 - epoch) / 4,
                                  step=epoch)
                if run.role == SELECTION:
                    client.log_metric(rid, "Validation-Accuracy", run.candidate.value
                                      - 0.01 * abs(self.best_epoch - 1 - epoch), step=epoch)
                    client.log_metric(rid, "Validation-Loss", 0.1, step=epoch)
            if run.role == FINAL:
                client.log_metric(rid, "Test-Accuracy", end - 0.01)
            client.set_terminated(rid, "FINISHED")
        from pipeline.finalize.runners import Outcome

        return {run.name: Outcome(True, "") for run in runs}


def scripted_search(name: str):
    from pipeline.finalize.candidates import Search

    exp = katib_experiment(name)
    return Search(exp, name, NS, [Candidate("winner", {**FULL, "num_blocks": "1"}, 1.0),
                                  Candidate("runner-up", {**FULL, "num_blocks": "2"}, 0.98)])


def test_a_final_run_that_stalls_is_rejected_and_final_training_recovers(mlflow_server):
    """Issue 21 finding 1: the winner's final run stalled at 0.75 training accuracy where its
    selection run reached 0.995; it became champion. Now it is tagged final-rejected, another
    seed is tried (stalls too), then the runner-up, whose final run trained."""
    from pipeline.finalize import finalize

    name = f"stall-{uuid.uuid4().hex[:8]}"
    trials = ScriptedTrials(mlflow_server.uri, name, {("winner", FINAL, 0), ("winner", FINAL, 1)})
    lines = []
    result = finalize(scripted_search(name), trials, mlflow_server.uri, name,
                      Schedule(top_k=2, epochs=5), lines.append)
    assert result.winner == "runner-up"
    assert len(result.rejected) == 2
    assert "ended at Training-Accuracy 0.7500 where its selection run(s) reached 0.9950" in \
        result.rejected[0]
    assert result.test_score == pytest.approx(0.985)
    client = MlflowClient(mlflow_server.uri)
    roles = sorted(r.data.tags["nasflow.role"] for r in client.search_runs(
        [client.get_experiment_by_name(name).experiment_id]))
    assert roles == ["final", "final-rejected", "final-rejected", "selection", "selection"]
    # promotion finds the run that trained, never a rejected one
    final = Registry(mlflow_server.uri, name).final_trial(name, NS)
    assert final.value == pytest.approx(0.985)
    assert sum("a failed training, not a model" in line for line in lines) == 2


def test_a_final_run_trains_as_long_as_its_selection_runs_took_to_their_best(mlflow_server):
    """Nothing is left to stop a final run on: it trains the epochs at which its candidate's
    selection runs were best on validation (here the 3rd of 5; the cosine schedule over 3), and
    its training curve is checked against theirs at that epoch (0.945, not their last 0.995)."""
    from pipeline.finalize import finalize

    name = f"stop-{uuid.uuid4().hex[:8]}"
    trials = ScriptedTrials(mlflow_server.uri, name, {("winner", FINAL, 0)}, best_epoch=3)
    lines = []
    result = finalize(scripted_search(name), trials, mlflow_server.uri, name,
                      Schedule(top_k=2, epochs=5, ensemble=1), lines.append)
    assert [(r.role, r.seed, r.schedule.epochs) for r in trials.runs] == [
        (SELECTION, 0, 5), (SELECTION, 0, 5), (FINAL, 0, 3), (FINAL, 1, 3)]
    assert "--epochs=3" in trials.runs[-1].flags()
    assert "ended at Training-Accuracy 0.7500 where its selection run(s) reached 0.9450" in \
        result.rejected[0]
    assert result.winner == "winner"
    assert any(line.endswith("training it on training + validation for 3 epochs (where its "
                             "selection runs were best)") for line in lines)


def test_no_final_run_that_trained_means_no_model_and_one_line(mlflow_server, tmp_path):
    from pipeline.finalize import finalize

    name = f"stall-{uuid.uuid4().hex[:8]}"
    trials = ScriptedTrials(mlflow_server.uri, name, {("winner", FINAL, 0), ("winner", FINAL, 1),
                                                      ("runner-up", FINAL, 0)})
    with pytest.raises(FinalizeError, match=r"no final run trained as its selection runs did "
                                            r"\(3 tried\)"):
        finalize(scripted_search(name), trials, mlflow_server.uri, name,
                 Schedule(top_k=2, epochs=5))
    assert Registry(mlflow_server.uri, name).final_trial(name, NS) is None
    # a rerun reads the runs it has (same inputs, same names) and decides the same, running none
    before = len(trials.ran)
    with pytest.raises(FinalizeError):
        finalize(scripted_search(name), trials, mlflow_server.uri, name,
                 Schedule(top_k=2, epochs=5))
    assert len(trials.ran) == before
