"""nasflow's early-stopping service for Katib (asha): a real gRPC server on 127.0.0.1, asked by
Katib's controller's calls and by Katib's own generated stubs. Its curves come from a stand-in
for Katib's DB manager (a real gRPC server answering ``GetObservationLog`` from the curves a run
of the embedded engine recorded: Katib's database cannot run here, like its API server), and
``SetTrialStatus`` patches a Trial on the fake Kubernetes API (tests/fake_kube.py)."""

from __future__ import annotations

import base64
import copy
import json
import os
import subprocess
from concurrent import futures

import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline.service.api import api_pb2, api_pb2_grpc
from pipeline.service.server import start
from tests.recorded_katib import NS, RECORDED
from tests.test_early_stopping import asha_experiment
from tests.test_engine import run
from tests.test_service import KATIB_VENV, experiment_message


class RecordedDB(api_pb2_grpc.DBManagerServicer):
    """Katib's DB manager, answering each trial's recorded observation log."""

    def __init__(self, logs: dict[str, dict[str, list[str]]]) -> None:
        self.logs, self.asked = logs, []

    def GetObservationLog(self, request, context):
        self.asked.append((request.trial_name, request.metric_name))
        values = self.logs.get(request.trial_name, {}).get(request.metric_name, [])
        return api_pb2.GetObservationLogReply(observation_log=api_pb2.ObservationLog(
            metric_logs=[api_pb2.MetricLog(time_stamp=f"2026-12-05T10:00:{i:02d}Z",
                                           metric=api_pb2.Metric(name=request.metric_name,
                                                                 value=v))
                         for i, v in enumerate(values)]))


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """An ASHA search on the embedded engine (parallelTrialCount 1): its manifest and trials."""
    doc = asha_experiment()
    _, engine = run(doc, tmp_path_factory.mktemp("asha"))
    return doc, engine.trials


@pytest.fixture
def db(searched):
    recorded = RecordedDB({t.name: t.observations for t in searched[1]})
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_DBManagerServicer_to_server(recorded, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield recorded, f"127.0.0.1:{port}"
    server.stop(0)


@pytest.fixture
def service(fake):
    running, port = start("127.0.0.1", 0, serve="early-stopping", custom_objects=fake.api(),
                          namespace=NS)
    yield port
    running.stop(0)


def with_early_stopping(doc: dict) -> api_pb2.Experiment:
    message = experiment_message(doc)
    early = doc["spec"]["earlyStopping"]
    message.spec.early_stopping.CopyFrom(api_pb2.EarlyStoppingSpec(
        algorithm_name=early["algorithmName"],
        algorithm_settings=[api_pb2.EarlyStoppingSetting(name=s["name"], value=s["value"])
                            for s in early["algorithmSettings"]]))
    return message


CONDITION = {"Succeeded": api_pb2.TrialStatus.SUCCEEDED,
             "EarlyStopped": api_pb2.TrialStatus.EARLYSTOPPED}


def rules_request(doc: dict, trials, db_address: str) -> api_pb2.GetEarlyStoppingRulesRequest:
    """What Katib's controller sends when it creates the next trial: every trial it has."""
    return api_pb2.GetEarlyStoppingRulesRequest(
        experiment=with_early_stopping(doc), db_manager_address=db_address,
        trials=[api_pb2.Trial(name=t.name, status=api_pb2.TrialStatus(
            condition=CONDITION[t.status])) for t in trials])


def as_dicts(reply) -> list[dict]:
    names = {api_pb2.LESS: "less", api_pb2.GREATER: "greater", api_pb2.EQUAL: "equal"}
    return [{"name": r.name, "value": float(r.value), "comparison": names[r.comparison],
             "start_step": r.start_step} for r in reply.early_stopping_rules]


def stub(port: int) -> api_pb2_grpc.EarlyStoppingStub:
    return api_pb2_grpc.EarlyStoppingStub(grpc.insecure_channel(f"127.0.0.1:{port}"))


def test_katib_gets_the_rules_the_embedded_engine_attached(searched, db, service):
    doc, trials = searched
    recorded, address = db
    for k, trial in enumerate(trials):
        reply = stub(service).GetEarlyStoppingRules(rules_request(doc, trials[:k], address),
                                                    timeout=30)
        assert as_dicts(reply) == trial.rules, k
    assert any(t.rules for t in trials)
    assert set(recorded.asked) == {(t.name, "score") for t in trials[:-1]}


def test_a_restarted_service_gives_the_same_rules(searched, db, fake):
    doc, trials = searched
    request = rules_request(doc, trials[:-1], db[1])
    answers = []
    for _ in range(2):
        running, port = start("127.0.0.1", 0, serve="early-stopping",
                              custom_objects=fake.api(), namespace=NS)
        answers.append(stub(port).GetEarlyStoppingRules(request, timeout=30))
        running.stop(0)
    assert answers[0] == answers[1] and answers[0].early_stopping_rules


def test_set_trial_status_marks_the_trial_early_stopped(service, fake):
    name = RECORDED["trials"][0]["metadata"]["name"]
    stub(service).SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name=name), timeout=30)
    conditions = fake.objects[("trials", NS, name)]["status"]["conditions"]
    assert conditions[-1]["type"] == "EarlyStopped"
    assert conditions[-1]["reason"] == "TrialEarlyStopped"
    assert [c["type"] for c in conditions].count("EarlyStopped") == 1
    with pytest.raises(grpc.RpcError) as missing:
        stub(service).SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="nope"), timeout=30)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("settings, message", [
    ([{"name": "reduction_factor", "value": "1"}],
     "spec.earlyStopping.algorithmSettings[0].value: reduction_factor must be >= 2"),
    ([{"name": "grace", "value": "2"}],
     "spec.earlyStopping.algorithmSettings[0].name: unknown setting 'grace'"),
])
def test_invalid_settings_are_invalid_argument_naming_the_field(service, settings, message):
    spec = api_pb2.EarlyStoppingSpec(algorithm_name="asha", algorithm_settings=[
        api_pb2.EarlyStoppingSetting(**s) for s in settings])
    with pytest.raises(grpc.RpcError) as refused:
        stub(service).ValidateEarlyStoppingSettings(
            api_pb2.ValidateEarlyStoppingSettingsRequest(early_stopping=spec), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in refused.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        stub(service).ValidateEarlyStoppingSettings(api_pb2.ValidateEarlyStoppingSettingsRequest(
            early_stopping=api_pb2.EarlyStoppingSpec(algorithm_name="hyperband")), timeout=30)
    assert "serves medianstop, asha, not 'hyperband'" in unknown.value.details()


def test_health_is_serving_for_the_early_stopping_service(service):
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{service}"))
    reply = health.Check(health_pb2.HealthCheckRequest(service="manager.v1beta1.EarlyStopping"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


KATIB_CLIENT = """
import base64, json, sys
import grpc
from kubeflow.katib import katib_api_pb2 as api, katib_api_pb2_grpc as rpc
request = api.GetEarlyStoppingRulesRequest.FromString(base64.b64decode(sys.argv[2]))
stub = rpc.EarlyStoppingStub(grpc.insecure_channel("127.0.0.1:" + sys.argv[1]))
reply = stub.GetEarlyStoppingRules(request, timeout=60)
stub.SetTrialStatus(api.SetTrialStatusRequest(trial_name=sys.argv[3]), timeout=60)
stub.ValidateEarlyStoppingSettings(api.ValidateEarlyStoppingSettingsRequest(
    early_stopping=request.experiment.spec.early_stopping), timeout=60)
print(json.dumps({"reply": base64.b64encode(reply.SerializeToString()).decode(),
                  "rules": [[r.name, r.value, api.ComparisonType.Name(r.comparison), r.start_step]
                            for r in reply.early_stopping_rules]}))
"""


@pytest.mark.skipif(not KATIB_VENV.exists(), reason="Katib's SDK venv (.venv/katib, built by "
                    "`make install`) is missing")
def test_katibs_own_stubs_get_the_engines_rules_and_stop_a_trial(searched, db, service, fake,
                                                                 tmp_path):
    doc, trials = searched
    k = next(i for i, t in enumerate(trials) if t.rules)
    request = rules_request(doc, trials[:k], db[1])
    name = RECORDED["trials"][1]["metadata"]["name"]
    script = tmp_path / "katib_client.py"
    script.write_text(KATIB_CLIENT)
    done = subprocess.run([str(KATIB_VENV), str(script), str(service),
                           base64.b64encode(request.SerializeToString()).decode(), name],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout)
    rule = trials[k].rules[0]
    assert theirs["rules"] == [[rule["name"], repr(rule["value"]), rule["comparison"].upper(),
                                rule["start_step"]]]
    assert api_pb2.GetEarlyStoppingRulesReply.FromString(base64.b64decode(theirs["reply"])) == \
        stub(service).GetEarlyStoppingRules(request, timeout=30)
    assert fake.objects[("trials", NS, name)]["status"]["conditions"][-1]["type"] == \
        "EarlyStopped"


def test_submit_needs_the_early_stopping_service_registered(cli, tmp_path, capsys):
    from pipeline.cli import main
    from tests.conftest import ROOT
    from tests.recorded_katib import MANIFEST

    doc = copy.deepcopy(MANIFEST)
    doc["metadata"]["name"] = doc["spec"]["trialTemplate"]["trialSpec"]["metadata"]["labels"][
        "katib.kubeflow.org/experiment"] = "asha-random-digits"
    doc["spec"]["earlyStopping"] = {"algorithmName": "asha", "algorithmSettings": [
        {"name": "min_resource", "value": "2"}]}
    path = tmp_path / "asha.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["submit", str(path)]) == 2  # the manifest does not retain its trials' Jobs
    assert "earlyStopping needs spec.trialTemplate.retain: true" in capsys.readouterr().err
    doc["spec"]["trialTemplate"]["retain"] = True
    path.write_text(yaml.safe_dump(doc))
    assert main(["submit", str(path)]) == 2
    assert "early stopping asha is nasflow's own" in capsys.readouterr().err
    config = yaml.safe_load((ROOT / "manifests/suggestion/katib-config.yaml").read_text())
    cli.add("configmaps", config)
    assert main(["submit", str(path)]) == 0
    submitted = cli.objects[("experiments", NS, "asha-random-digits")]
    assert submitted["spec"]["earlyStopping"]["algorithmName"] == "asha"


class SlowDB(RecordedDB):
    """A DB manager that takes 2 s a read (issue 34: it used to stall the service)."""

    def GetObservationLog(self, request, context):
        import time

        time.sleep(2.0)
        return super().GetObservationLog(request, context)


def test_a_slow_db_manager_cannot_stall_the_service(searched, service):
    """30 trials a call, 2 s a read, callers' deadline 3 s: each call ends at its deadline
    (DEADLINE_EXCEEDED), not 60 s later, and four such calls at once leave the health check
    and a trivial call answering."""
    import threading
    import time

    doc, trials = searched
    slow = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    api_pb2_grpc.add_DBManagerServicer_to_server(
        SlowDB({t.name: t.observations for t in trials}), slow)
    db_port = slow.add_insecure_port("127.0.0.1:0")
    slow.start()
    many = (list(trials) * 30)[:30]
    request = rules_request(doc, many, f"127.0.0.1:{db_port}")
    codes, took = [], []

    def call() -> None:
        started = time.monotonic()
        try:
            stub(service).GetEarlyStoppingRules(request, timeout=3)
            codes.append("OK")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
        took.append(time.monotonic() - started)

    callers = [threading.Thread(target=call) for _ in range(4)]
    for caller in callers:
        caller.start()
    time.sleep(0.5)
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{service}"))
    started = time.monotonic()
    assert health.Check(health_pb2.HealthCheckRequest(
        service="manager.v1beta1.EarlyStopping"), timeout=2).status == \
        health_pb2.HealthCheckResponse.SERVING
    stub(service).ValidateEarlyStoppingSettings(api_pb2.ValidateEarlyStoppingSettingsRequest(
        early_stopping=request.experiment.spec.early_stopping), timeout=2)
    assert time.monotonic() - started < 2.0
    for caller in callers:
        caller.join()
    slow.stop(0)
    assert sorted(set(codes)) <= ["DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED"], codes
    assert max(took) < 6.0, took  # the deadline (3 s) and one read's end, not 30 reads


def test_set_trial_status_without_a_cluster_is_a_failed_precondition(monkeypatch):
    """Outside a pod there is no in-cluster API: said as FAILED_PRECONDITION, not UNKNOWN."""
    running, port = start("127.0.0.1", 0, serve="early-stopping", namespace=NS)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            stub(port).SetTrialStatus(api_pb2.SetTrialStatusRequest(trial_name="t-1"), timeout=5)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no Kubernetes API to mark trial 't-1' early-stopped" in refused.value.details()
    finally:
        running.stop(0)


def test_early_stopping_fuzz_every_reply_is_ok_or_refused_in_time(searched, db, service):
    """200 GetEarlyStoppingRules and ValidateEarlyStoppingSettings requests with numeric
    extremes in the settings (0, negative, NaN, ±inf, 1e300, Unicode digits, 1 MB values),
    odd trial names and counts: each answered OK, INVALID_ARGUMENT or UNAVAILABLE within its
    deadline and 2 s of the service's CPU, the health check SERVING throughout."""
    import random
    import resource
    import time

    doc, trials = searched
    rng = random.Random(20261207)
    odd = ["0", "-1", "nan", "inf", "-inf", "1e300", "٣", "２", "", "x" * (1 << 20), "3",
           "1.5", str(2**63)]
    names = ["reduction_factor", "min_resource", "max_resource", "min_trials_required",
             "start_step", "bogus"]
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{service}"))
    calls = stub(service)
    codes: dict[str, int] = {}
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for i in range(200):
        mutated = copy.deepcopy(doc)
        settings = mutated["spec"]["earlyStopping"]["algorithmSettings"]
        for _ in range(rng.choice([0, 1, 2])):
            settings.append({"name": rng.choice(names), "value": rng.choice(odd)})
        request = rules_request(mutated, rng.choice([[], list(trials), list(trials) * 3]),
                                db[1])
        if rng.random() < 0.2:
            request.trials.add(name=rng.choice(["", "ü" * 300, "x" * 70_000]))
        started, cpu = time.monotonic(), time.process_time()
        try:
            if i % 3 == 0:
                calls.ValidateEarlyStoppingSettings(api_pb2.ValidateEarlyStoppingSettingsRequest(
                    early_stopping=request.experiment.spec.early_stopping), timeout=10)
            else:
                calls.GetEarlyStoppingRules(request, timeout=10)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        assert code in ("OK", "INVALID_ARGUMENT", "UNAVAILABLE"), (i, code)
        assert time.monotonic() - started < 10 and time.process_time() - cpu < 2.0, i
        codes[code] = codes.get(code, 0) + 1
        if i % 20 == 0:
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status \
                == health_pb2.HealthCheckResponse.SERVING
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 300
    assert codes.get("OK", 0) >= 20 and codes.get("INVALID_ARGUMENT", 0) >= 20, codes
