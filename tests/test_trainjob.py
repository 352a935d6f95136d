"""Kubeflow Trainer TrainJob trials: validation, the multi-worker contract of the trial image,
the embedded engine's local workers (2-node trials against 1-node ones, a worker killed), and
parameters from ``KUBEFLOW_TRAINER_OPT_*`` variables."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from pipeline.cli import main as main_cli
from pipeline.engine.state import StateStore
from pipeline.validation import validate
from tests.conftest import ROOT, run_trial
from trial_image import distributed
from trial_image.errors import InputError

TRAINJOBS = ROOT / "manifests" / "experiments" / "trainjob"
EPOCHS = 10
PINNED = {"dropout": "0", "optimizer": "adam", "learning_rate": "0.003", "batch_size": "64"}
METRIC_LINE = re.compile(r"^\S+ Validation-Accuracy=([0-9.]+)$", re.M)


def trainjob_manifest(source: str, name: str, tmp_path: Path, trials: int, epochs: int,
                      failed: int = 1, pinned: dict[str, str] | None = None) -> Path:
    """``source`` made small: ``trials`` trials one at a time, ``epochs`` epochs each; the
    ``pinned`` parameters taken out of the space, fixed at their values."""
    doc = yaml.safe_load((TRAINJOBS / source).read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["trialTemplate"]["trialSpec"]["metadata"]["labels"]["katib.kubeflow.org/experiment"] = \
        name
    spec.update(maxTrialCount=trials, parallelTrialCount=1, maxFailedTrialCount=failed)
    trainer = spec["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    trainer["command"] = [a.replace("--epochs=15", f"--epochs={epochs}")
                          for a in trainer["command"]]
    template = spec["trialTemplate"]
    for parameter, value in (pinned or {}).items():
        spec["parameters"] = [p for p in spec["parameters"] if p["name"] != parameter]
        (declared,) = [p for p in template["trialParameters"] if p["reference"] == parameter]
        template["trialParameters"].remove(declared)
        trainer["command"] = [a.replace(f"${{trialParameters.{declared['name']}}}", value)
                              for a in trainer["command"]]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def nasflow_run(path: Path, uri: str, tmp_path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline", "run", str(path), "--tracking-uri", uri, "--workdir",
         str(tmp_path / ".nasflow"), "--output", "json", "--seed", "1"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})


# ---- the contract: where a worker learns its place ---------------------------------------------

def test_one_process_without_the_contract():
    assert distributed.workers({}) is None
    assert distributed.workers({"NASFLOW_NUM_NODES": "1", "JOB_COMPLETION_INDEX": "0"}) is None


def test_a_trainjob_node_finds_its_peers_by_the_jobsets_host_names():
    found = distributed.workers({"NASFLOW_NUM_NODES": "3", "JOB_COMPLETION_INDEX": "2",
                                 "NASFLOW_JOBSET_NAME": "tpe-digits-x7k2m9qp"})
    assert found.rank == 2 and found.count == 3 and not found.chief
    assert found.tf_config == {"cluster": {"worker": [
        f"tpe-digits-x7k2m9qp-node-0-{i}.tpe-digits-x7k2m9qp:2222" for i in range(3)]},
        "task": {"type": "worker", "index": 2}}
    local = distributed.workers({"NASFLOW_NUM_NODES": "2", "JOB_COMPLETION_INDEX": "0",
                                 "NASFLOW_WORKER_HOSTS": "127.0.0.1:4001,127.0.0.1:4002"})
    assert local.chief and local.tf_config["cluster"]["worker"] == ["127.0.0.1:4001",
                                                                    "127.0.0.1:4002"]


def test_tf_config_is_taken_as_given():
    config = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"]},
              "task": {"type": "worker", "index": 1}}
    found = distributed.workers({"TF_CONFIG": json.dumps(config), "NASFLOW_NUM_NODES": "9"})
    assert (found.rank, found.count, found.chief) == (2, 3, False)
    assert found.tf_config == config


@pytest.mark.parametrize("environ,named", [
    ({"NASFLOW_NUM_NODES": "two"}, "$NASFLOW_NUM_NODES"),
    ({"NASFLOW_NUM_NODES": "2"}, "$JOB_COMPLETION_INDEX"),
    ({"NASFLOW_NUM_NODES": "2", "JOB_COMPLETION_INDEX": "2"}, "$JOB_COMPLETION_INDEX"),
    ({"NASFLOW_NUM_NODES": "2", "JOB_COMPLETION_INDEX": "0"}, "$NASFLOW_JOBSET_NAME"),
    ({"NASFLOW_NUM_NODES": "2", "JOB_COMPLETION_INDEX": "0",
      "NASFLOW_WORKER_HOSTS": "127.0.0.1:1"}, "$NASFLOW_WORKER_HOSTS"),
    ({"TF_CONFIG": "{not json"}, "$TF_CONFIG"),
], ids=["not-a-number", "no-rank", "rank-too-high", "no-jobset", "hosts-short", "tf-config"])
def test_an_inconsistent_environment_is_an_input_error(environ, named):
    with pytest.raises(InputError, match=re.escape(named)):
        distributed.workers(environ)


# ---- validation ---------------------------------------------------------------------------------

def _trainjob_problems(edit) -> list[str]:
    doc = yaml.safe_load((TRAINJOBS / "random-digits-2-nodes.yaml").read_text())
    edit(doc["spec"]["trialTemplate"])
    _, problems = validate("x.yaml", doc)
    return [str(p) for p in problems]


@pytest.mark.parametrize("edit,expected", [
    (lambda t: t["trialSpec"].update(apiVersion="trainer.kubeflow.org/v1"),
     "spec.trialTemplate.trialSpec.apiVersion: a TrainJob is trainer.kubeflow.org/v1alpha1"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNode=2),
     "spec.trialTemplate.trialSpec.spec.trainer.numNode: unknown field: Kubeflow Trainer's "
     "TrainerV1alpha1Trainer has no 'numNode'; did you mean numNodes?"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNodes="2"),
     "spec.trialTemplate.trialSpec.spec.trainer.numNodes: Input should be a valid integer"),
    (lambda t: t["trialSpec"]["spec"].pop("runtimeRef"),
     "spec.trialTemplate.trialSpec.spec.runtimeRef: Field required"),
    (lambda t: t.update(primaryContainerName="training-container"),
     "spec.trialTemplate.primaryContainerName: must be 'node' for a TrainJob"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNodes=3),
     "spec.trialTemplate.trialSpec.spec.trainer.env[NASFLOW_NUM_NODES]: is '2' but numNodes "
     "is 3"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].pop("env"),
     "spec.trialTemplate.trialSpec.spec.trainer.env: numNodes is 2: add {name: "
     "NASFLOW_NUM_NODES"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNodes=0),
     "spec.trialTemplate.trialSpec.spec.trainer.numNodes: must be from 1 to 1024, got 0"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNodes=10**9),
     "spec.trialTemplate.trialSpec.spec.trainer.numNodes: must be from 1 to 1024, got "
     "1000000000"),
    (lambda t: t["trialSpec"]["spec"]["trainer"].update(numNodes=True),
     "spec.trialTemplate.trialSpec.spec.trainer.numNodes: Input should be a valid integer"),
], ids=["api-version", "unknown-field", "string-nodes", "no-runtime", "primary", "mismatch",
        "no-num-nodes", "zero-nodes", "huge", "bool"])
def test_trainjob_templates_are_checked_like_trainers_schema(edit, expected):
    problems = _trainjob_problems(edit)
    assert any(p.startswith(expected) for p in problems), problems


def test_resource_quantities_are_strings_as_kubernetes_writes_them():
    def resources(t):
        t["trialSpec"]["spec"]["trainer"]["resourcesPerNode"] = {
            "limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": 1}}

    assert _trainjob_problems(resources) == []


# ---- parameters from KUBEFLOW_TRAINER_OPT_* --------------------------------------------------

def _katib_lines(output: str) -> list[str]:
    return [line.split(" ", 1)[1] for line in output.splitlines()
            if re.match(r"^\S+Z [A-Z][\w-]+=", line) and "Latency" not in line]


@pytest.mark.slow
def test_parameters_from_the_environment_train_the_same_candidate(mlflow_server, tmp_path):
    """The OptimizationJob's way (variables only) and Katib's (flags) give one candidate and,
    seeded, the same metrics; an unknown name exits 2 naming it."""
    flags = ["--num-blocks=1", "--filters=8", "--learning-rate=0.01", "--epochs=2",
             "--batch-norm=false", "--experiment-name=opt-env"]
    by_flags = run_trial([*flags, "--trial-name=flags"], tmp_path, mlflow_server.uri)
    env = {"KUBEFLOW_TRAINER_OPT_NUM_BLOCKS": "1", "KUBEFLOW_TRAINER_OPT_FILTERS": "8",
           "KUBEFLOW_TRAINER_OPT_LR": "0.01", "KUBEFLOW_TRAINER_OPT_EPOCHS": "2",
           "KUBEFLOW_TRAINER_OPT_BATCH_NORM": "false",
           "KUBEFLOW_TRAINER_OPT_EXPERIMENT_NAME": "opt-env",
           "KUBEFLOW_TRAINER_OPT_TRIAL_NAME": "variables"}
    by_env = run_trial([], tmp_path, mlflow_server.uri, env=env)
    assert by_flags.returncode == 0 and by_env.returncode == 0, by_env.stderr[-2000:]
    assert _katib_lines(by_env.stdout) == _katib_lines(by_flags.stdout)
    client = MlflowClient(mlflow_server.uri)
    runs = {r.data.tags["katib.trial"]: r for r in client.search_runs(
        [client.get_experiment_by_name("opt-env").experiment_id])}
    assert runs["variables"].data.tags["nasflow.candidate_id"] == \
        runs["flags"].data.tags["nasflow.candidate_id"]
    assert runs["variables"].data.params["learning_rate"] == "0.01"
    unknown = run_trial([], tmp_path, mlflow_server.uri,
                        env={"KUBEFLOW_TRAINER_OPT_LEARNING_RATES": "0.1"})
    assert unknown.returncode == 2
    assert "$KUBEFLOW_TRAINER_OPT_LEARNING_RATES: the trial has no flag --learning-rates" in \
        unknown.stderr


def test_a_flag_wins_over_its_variable_aliases_included():
    from trial_image.cli import PER_BLOCK, build_parser
    from trial_image.optimization_job import with_environment

    env = {"KUBEFLOW_TRAINER_OPT_NUM_EPOCHS": "3", "KUBEFLOW_TRAINER_OPT_LR": "0.5",
           "KUBEFLOW_TRAINER_OPT_FILTERS_2": "64", "KUBEFLOW_TRAINER_OPT_SKIP_TEST": "true",
           "KUBEFLOW_TRAINER_OPT_BATCH_NORM": "false", "PATH": "/bin"}
    argv = with_environment(["--epochs=1", "--learning_rate", "0.1"], build_parser(), env,
                            PER_BLOCK)
    assert argv == ["--epochs=1", "--learning_rate", "0.1", "--batch-norm=false",
                    "--filters-2=64", "--skip-test"]
    off = with_environment([], build_parser(), {"KUBEFLOW_TRAINER_OPT_SKIP_TEST": "no"},
                           PER_BLOCK)
    assert off == []


def test_a_value_its_flag_refuses_names_the_variable(capsys):
    from trial_image.cli import PER_BLOCK, build_parser
    from trial_image.optimization_job import with_environment

    parser = build_parser()
    argv = with_environment([], parser, {"KUBEFLOW_TRAINER_OPT_OPTIMIZER": "adamw"}, PER_BLOCK)
    with pytest.raises(SystemExit) as exit_:
        parser.parse_args(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--optimizer: invalid choice: 'adamw'" in err
    assert err.rstrip().endswith("(from $KUBEFLOW_TRAINER_OPT_OPTIMIZER)")


# ---- the embedded engine: numNodes local workers ------------------------------------------------

@pytest.mark.slow
def test_a_two_node_trial_is_one_trial_and_matches_one_node(mlflow_server, tmp_path):
    """Same manifest, same assignments, same global batch and seed: 2 local workers report one
    set of Katib lines and one MLflow run with one model, within a point of 1 worker. Without
    dropout (each worker draws its own masks for its half of the batch, so curves with dropout
    agree only in distribution, docs/trainjob.md) and with a learning rate that learns in
    ten epochs."""
    results = {}
    for source, name in (("random-digits-trainjob.yaml", "tj-one-node"),
                         ("random-digits-2-nodes.yaml", "tj-two-nodes")):
        path = trainjob_manifest(source, name, tmp_path, trials=1, epochs=EPOCHS,
                                 pinned=PINNED)
        started = time.perf_counter()
        out, err = nasflow_run(path, mlflow_server.uri, tmp_path).communicate(timeout=300)
        status = json.loads(out or "{}")
        assert status.get("trialsSucceeded") == 1, err[-3000:]
        (trial,) = StateStore(tmp_path / ".nasflow" / name / "state.db").trials()
        log = (tmp_path / ".nasflow" / name / "trials" / trial.name / "metrics.log").read_text()
        results[name] = (trial, log, status, time.perf_counter() - started)
    (one, one_log, _, one_seconds), (two, two_log, status, two_seconds) = results.values()
    print(f"1 node: {one_seconds:.1f} s, 2 nodes: {two_seconds:.1f} s",
          METRIC_LINE.findall(one_log), METRIC_LINE.findall(two_log))
    assert one.assignments == two.assignments
    assert len(METRIC_LINE.findall(two_log)) == EPOCHS  # one per epoch, from the chief only
    worker = tmp_path / ".nasflow" / "tj-two-nodes" / "trials" / two.name / "worker-1.log"
    assert worker.exists() and not METRIC_LINE.findall(worker.read_text())
    final_one, final_two = (float(METRIC_LINE.findall(log)[-1]) for log in (one_log, two_log))
    assert abs(final_one - final_two) <= 0.01, (final_one, final_two)

    client = MlflowClient(mlflow_server.uri)
    parent = client.get_run(status["mlflowParentRunId"])
    (run,) = client.search_runs([parent.info.experiment_id],
                                f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert run.info.status == "FINISHED" and run.data.tags["katib.trial"] == two.name
    assert run.data.tags["nasflow.workers"] == "2"
    assert run.data.metrics["Validation-Accuracy"] == pytest.approx(final_two)
    models = client.search_logged_models([parent.info.experiment_id])
    assert [m.source_run_id for m in models] == [run.info.run_id]


def _pid_of(trial: str, rank: int) -> int | None:
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if f"KATIB_TRIAL_NAME={trial}".encode() in environ and \
                f"JOB_COMPLETION_INDEX={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.slow
def test_killing_one_worker_fails_the_trial_and_the_search_goes_on(mlflow_server, tmp_path):
    path = trainjob_manifest("random-digits-2-nodes.yaml", "tj-kill", tmp_path, trials=2,
                             epochs=12, failed=2)
    engine = nasflow_run(path, mlflow_server.uri, tmp_path)
    trials = tmp_path / ".nasflow" / "tj-kill" / "trials"
    deadline = time.monotonic() + 120
    victim = None
    while victim is None and time.monotonic() < deadline:
        logs = sorted(trials.glob("*/metrics.log")) if trials.exists() else []
        if logs and METRIC_LINE.search(logs[0].read_text(errors="replace")):
            victim = _pid_of(logs[0].parent.name, 1)
        time.sleep(0.2)
    assert victim is not None, "the first trial never reported an epoch"
    first = logs[0].parent.name
    os.kill(victim, signal.SIGKILL)
    out, err = engine.communicate(timeout=300)
    status = json.loads(out)
    assert (status["trialsFailed"], status["trialsSucceeded"]) == (1, 1), err[-3000:]
    failed = {t.name: t for t in StateStore(tmp_path / ".nasflow" / "tj-kill" / "state.db"
                                            ).trials()}[first]
    assert failed.status == "Failed"
    assert failed.message.startswith("worker 1 of 2 was killed by signal 9")
    assert _pid_of(first, 0) is None and _pid_of(first, 1) is None  # the chief exited too
    client = MlflowClient(mlflow_server.uri)
    runs = client.search_runs([client.get_experiment_by_name("tj-kill").experiment_id])
    statuses = {r.data.tags.get("katib.trial"): r.info.status for r in runs}
    assert statuses[first] in ("FAILED", "KILLED") and "RUNNING" not in statuses.values()
    # the chief ended its own run (stopped by the engine, or its collective failing first)
    (chief,) = [r for r in runs if r.data.tags.get("katib.trial") == first]
    assert chief.data.tags["nasflow.failure_reason"]


# ---- the cluster: Katib runs TrainJob trials; final training and compression as TrainJobs ------

@pytest.mark.slow
def test_pipeline_on_trainjob_trials_trains_and_compresses_as_trainjobs(cli, mlflow_server,
                                                                        tmp_path, capsys):
    """submit -> Katib's TrainJob trials (recorded) -> selection and final runs as 2-node
    TrainJobs (run by a stand-in for Trainer: 2 local workers each) -> promote -> compression as
    a 1-node TrainJob. Every request is one the pipeline's Role allows."""
    import uuid

    from tests.recorded_katib import NS
    from tests.test_finalize import Kubelet, allowed_by_the_pipeline_role, pipeline_config, searched

    kubelet = Kubelet(cli, mlflow_server.uri, tmp_path)
    run_spec = {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob"}
    cli.watch_script = [searched(cli, mlflow_server, run_spec)] + [kubelet.watch] * 4
    model = f"trainjob-{uuid.uuid4().hex[:6]}"
    config = pipeline_config(tmp_path, model, experiment=str(TRAINJOBS / "random-digits-2-nodes"
                                                                          ".yaml"),
                             compress={"variants": "int8-full", "maxAccuracyDrop": 100})
    code = main_cli(["pipeline", "--config", config, "--tracking-uri", mlflow_server.uri,
                     "--output", "json"])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    result = json.loads(out.out)
    name = result["experiment"]
    submitted = cli.objects[("experiments", NS, name)]["spec"]["trialTemplate"]
    assert submitted["trialSpec"]["kind"] == "TrainJob"
    assert submitted["trialSpec"]["spec"]["runtimeRef"]["name"] == "nasflow-tensorflow"
    trainjobs = {n: o for (plural, _, n), o in cli.objects.items() if plural == "trainjobs"}
    assert sorted(trainjobs) == sorted(kubelet.started) and len(trainjobs) == 4
    assert not any(plural == "jobs" for (plural, _, _) in cli.objects)
    compress = trainjobs.pop(kubelet.started.pop())
    trainer = compress["spec"]["trainer"]
    assert trainer["command"][:4] == ["python", "-m", "trial_image", "compress"]
    assert trainer["numNodes"] == 1 and "NASFLOW_NUM_NODES" not in str(trainer.get("env"))
    roles = [trainjobs[n]["metadata"]["labels"]["nasflow.dev/role"] for n in kubelet.started]
    assert roles == ["selection", "selection", "final"]
    for job in trainjobs.values():
        assert job["spec"]["trainer"]["numNodes"] == 2
        assert job["spec"]["trainer"]["image"] == "registry.test/nasflow-trial:2.0"
        assert job["metadata"]["ownerReferences"][0]["kind"] == "Experiment"
        assert not any(k.startswith("katib.kubeflow.org/") for k in job["metadata"]["labels"])
    final = result["final"]
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(final["final_run"])
    assert run.data.tags["katib.trial"] == kubelet.started[2] and run.info.status == "FINISHED"
    # the final TrainJob's two workers made one run holding one model
    assert [m.source_run_id for m in client.search_logged_models(
        [run.info.experiment_id], f"source_run_id = '{run.info.run_id}'")] == [run.info.run_id]
    assert result["promotion"]["decision"] == "champion"
    assert client.get_registered_model(model).aliases == {
        "champion": result["promotion"]["version"]}
    (variant,) = result["compression"]
    assert variant["variant"] == "int8-full" and variant["version"] is not None
    assert allowed_by_the_pipeline_role(cli.requests)


def test_the_engine_runs_at_most_16_workers_per_trial():
    from pipeline.validation import engine_support

    doc = yaml.safe_load((TRAINJOBS / "random-digits-2-nodes.yaml").read_text())
    trainer = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["trainer"]
    trainer["numNodes"] = 17
    trainer["env"] = [{"name": "NASFLOW_NUM_NODES", "value": "17"}]
    experiment, problems = validate("x.yaml", doc)
    assert problems == []
    assert engine_support(experiment) == [
        "a TrainJob of 17 nodes (the embedded engine starts at most 16 local workers per trial)"]
