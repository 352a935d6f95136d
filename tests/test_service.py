"""nasflow's algorithms served to Katib: a real gRPC server on 127.0.0.1, driven the way Katib's
suggestion controller drives it (every trial on every call, several suggestions per call,
parallel trials), checked against the embedded engine's suggestions for the same seed and
history, across a restart, and against Katib's own generated stubs in their own venv."""

from __future__ import annotations

import base64
import copy
import filecmp
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeline.service.api import api_pb2, api_pb2_grpc
from pipeline.service.convert import INDEX_LABEL
from pipeline.service.server import start
from pipeline.suggestion.base import trial_name
from tests import test_suggestions
from tests.conftest import ROOT

KATIB_VENV = ROOT / ".venv" / "katib" / "bin" / "python"
TYPES = {"double": api_pb2.DOUBLE, "int": api_pb2.INT, "discrete": api_pb2.DISCRETE,
         "categorical": api_pb2.CATEGORICAL}


# ---- what Katib's controller sends -------------------------------------------------------------


def _parameter(p: dict) -> api_pb2.ParameterSpec:
    fs = p["feasibleSpace"]
    return api_pb2.ParameterSpec(
        name=p["name"], parameter_type=TYPES[p["parameterType"]],
        feasible_space=api_pb2.FeasibleSpace(
            min=str(fs.get("min", "")), max=str(fs.get("max", "")), step=str(fs.get("step", "")),
            list=[str(v) for v in fs.get("list", [])],
            distribution={"logUniform": api_pb2.LOG_UNIFORM}.get(fs.get("distribution"), 0)))


def experiment_message(doc: dict) -> api_pb2.Experiment:
    """A manifest as Katib's controller converts it for a suggestion service."""
    spec = doc["spec"]
    objective = spec["objective"]
    message = api_pb2.Experiment(name=doc["metadata"]["name"], spec=api_pb2.ExperimentSpec(
        objective=api_pb2.ObjectiveSpec(
            type=api_pb2.MAXIMIZE if objective["type"] == "maximize" else api_pb2.MINIMIZE,
            objective_metric_name=objective["objectiveMetricName"],
            additional_metric_names=objective.get("additionalMetricNames", [])),
        algorithm=api_pb2.AlgorithmSpec(
            algorithm_name=spec["algorithm"]["algorithmName"],
            algorithm_settings=[api_pb2.AlgorithmSetting(name=s["name"], value=str(s["value"]))
                                for s in spec["algorithm"].get("algorithmSettings", [])]),
        parallel_trial_count=spec.get("parallelTrialCount", 3),
        max_trial_count=spec.get("maxTrialCount", 0)))
    if "nasConfig" in spec:
        nas = spec["nasConfig"]
        graph = nas["graphConfig"]
        message.spec.nas_config.graph_config.CopyFrom(api_pb2.GraphConfig(
            num_layers=graph["numLayers"], input_sizes=graph["inputSizes"],
            output_sizes=graph["outputSizes"]))
        for op in nas["operations"]:
            message.spec.nas_config.operations.operation.add(
                operation_type=op["operationType"], parameter_specs={
                    "parameters": [_parameter(p) for p in op["parameters"]]})
    else:
        message.spec.parameter_specs.parameters.extend(_parameter(p) for p in spec["parameters"])
    return message


class FakeController:
    """Katib's suggestion controller: asks for suggestions as slots free, creates the trials
    with the names and labels the reply gives, sends all of them every time, and finishes the
    oldest running trial first (its result from the conformance suite's objective)."""

    def __init__(self, doc: dict, port: int) -> None:
        self.doc, self.experiment = doc, experiment_message(doc)
        self.parallel = doc["spec"]["parallelTrialCount"]
        self.trials: list[api_pb2.Trial] = []
        self.total = 0
        self.connect(port)

    def connect(self, port: int) -> None:
        self.stub = api_pb2_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def request(self, count: int) -> api_pb2.GetSuggestionsRequest:
        self.total += count
        return api_pb2.GetSuggestionsRequest(experiment=self.experiment, trials=self.trials,
                                             current_request_number=count,
                                             total_request_number=self.total)

    def ask(self, count: int) -> list[dict[str, str]]:
        reply = self.stub.GetSuggestions(self.request(count), timeout=60)
        for a in reply.parameter_assignments:
            self.trials.append(api_pb2.Trial(
                name=a.trial_name, spec=api_pb2.TrialSpec(
                    labels=dict(a.labels), parameter_assignments={"assignments": a.assignments}),
                status=api_pb2.TrialStatus(condition=api_pb2.TrialStatus.RUNNING)))
        return [{p.name: p.value for p in a.assignments} for a in reply.parameter_assignments]

    def finish_oldest(self) -> None:
        trial = next(t for t in self.trials
                     if t.status.condition == api_pb2.TrialStatus.RUNNING)
        index = int(trial.spec.labels[INDEX_LABEL])
        result = test_suggestions.result(
            index, {p.name: p.value for p in trial.spec.parameter_assignments.assignments})
        if result.value is None:
            trial.status.condition = api_pb2.TrialStatus.FAILED
            return
        trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
        trial.status.observation.metrics.extend(
            api_pb2.Metric(name=k, value=repr(v)) for k, v in result.metrics.items())

    def search(self, trials: int, stop_after: int | None = None, restart=None) -> list[dict]:
        """Every trial's assignments: ``parallel`` at first, then alternately one and two as
        trials finish; ``restart(after)`` is called once ``stop_after`` trials exist."""
        got = self.ask(self.parallel)
        size = 1
        while len(got) < trials:
            if stop_after is not None and len(got) >= stop_after and restart:
                restart(self)
                restart = None
            count = min(size, trials - len(got))
            for _ in range(count):
                self.finish_oldest()
            got += self.ask(count)
            size = 3 - size
        return got


@pytest.fixture
def server():
    running, port = start("127.0.0.1", 0)
    yield port
    running.stop(0)


CASES = {"evolution-nas": test_suggestions.CASES["evolution-nas"],
         "evolution-hp": test_suggestions.CASES["evolution-hp"],
         "pareto-evolution-nas": test_suggestions.CASES["pareto-evolution-nas"],
         "nsga2": test_suggestions.CASES["nsga2"]}


def engine_suggestions(doc: dict, trials: int) -> list[dict]:
    """What the embedded engine's algorithm proposes with the same seed (0) and histories."""
    suggestions, _, _ = test_suggestions.drive(doc, seed=0, trials=trials,
                                               parallel=doc["spec"]["parallelTrialCount"])
    return suggestions


def with_parallel(doc: dict, parallel: int = 3) -> dict:
    doc = copy.deepcopy(doc)
    doc["spec"]["parallelTrialCount"] = parallel
    doc["spec"]["maxTrialCount"] = 14
    return doc


# ---- the search through gRPC -----------------------------------------------------------------


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_whole_search_through_grpc_equals_the_embedded_engine(case, server):
    doc = with_parallel(CASES[case])
    controller = FakeController(doc, server)
    served = controller.search(14)
    assert served == engine_suggestions(doc, 14)
    assert len({json.dumps(s, sort_keys=True) for s in served}) == 14  # nothing repeated
    # trial names as the embedded engine gives them; indices as labels
    name = doc["metadata"]["name"]
    assert [t.name for t in controller.trials] == [trial_name(name, 0, i) for i in range(14)]


@pytest.mark.parametrize("case", ["evolution-nas", "pareto-evolution-nas", "nsga2"])
def test_a_restarted_service_suggests_what_the_old_one_would_have(case, server):
    doc = with_parallel(CASES[case])
    uninterrupted = FakeController(doc, server).search(14)
    replacement = {}

    def kill_and_restart(controller: FakeController) -> None:
        # a new pod: nothing shared with the old one but what Katib sends
        replacement["server"], port = start("127.0.0.1", 0)
        controller.connect(port)

    try:
        resumed = FakeController(doc, server).search(14, stop_after=7, restart=kill_and_restart)
    finally:
        replacement["server"].stop(0)
    assert resumed == uninterrupted


def test_an_exhausted_search_answers_empty(server):
    doc = copy.deepcopy(test_suggestions.CASES["evolution-hp"])
    doc["spec"]["parameters"] = [{"name": "opt", "parameterType": "categorical",
                                  "feasibleSpace": {"list": ["adam", "sgd"]}}]
    controller = FakeController(with_parallel(doc, 1), server)
    assert len(controller.ask(2)) == 2
    assert controller.ask(1) == []


def test_invalid_settings_are_invalid_argument_naming_the_field(server):
    stub = api_pb2_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{server}"))
    doc = copy.deepcopy(test_suggestions.CASES["evolution-hp"])
    stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(
        experiment=experiment_message(doc)), timeout=10)
    doc["spec"]["algorithm"]["algorithmSettings"] = [{"name": "population_size", "value": "1"}]
    with pytest.raises(grpc.RpcError) as refused:
        stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(
            experiment=experiment_message(doc)), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == ("spec.algorithm.algorithmSettings[0].value: "
                                       "population_size must be >= 2, got '1'")
    doc["spec"]["algorithm"] = {"algorithmName": "pbt"}
    with pytest.raises(grpc.RpcError) as refused:
        stub.GetSuggestions(api_pb2.GetSuggestionsRequest(
            experiment=experiment_message(doc), current_request_number=1,
            total_request_number=1), timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert ("serves random, tpe, grid, multivariate-tpe, bayesianoptimization, cmaes, sobol, "
            "nsga2, hyperband, enas, darts, evolution, pareto-evolution, not 'pbt'"
            ) in refused.value.details()


def test_health_is_serving_for_katibs_probe(server):
    stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server}"))
    for service in ("", "manager.v1beta1.Suggestion"):
        reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_generated_code_is_what_the_proto_gives(tmp_path):
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", ".",
                    f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}",
                    "pipeline/service/api/api.proto"], cwd=ROOT, check=True)
    for name in ("api_pb2.py", "api_pb2_grpc.py"):
        assert filecmp.cmp(tmp_path / "pipeline/service/api" / name,
                           ROOT / "pipeline/service/api" / name, shallow=False), name


# ---- Katib's own stubs -------------------------------------------------------------------------

KATIB_CLIENT = """
import base64, json, sys
import grpc
from kubeflow.katib import katib_api_pb2 as api, katib_api_pb2_grpc as rpc
request = api.GetSuggestionsRequest.FromString(base64.b64decode(sys.argv[2]))
stub = rpc.SuggestionStub(grpc.insecure_channel("127.0.0.1:" + sys.argv[1]))
reply = stub.GetSuggestions(request, timeout=60)
bad = request.experiment
del bad.spec.algorithm.algorithm_settings[:]
bad.spec.algorithm.algorithm_settings.add(name="sample_size", value="0")
try:
    stub.ValidateAlgorithmSettings(api.ValidateAlgorithmSettingsRequest(experiment=bad))
    refused = None
except grpc.RpcError as exc:
    refused = [exc.code().name, exc.details()]
print(json.dumps({"reply": base64.b64encode(reply.SerializeToString()).decode(),
                  "names": [a.trial_name for a in reply.parameter_assignments],
                  "assignments": [{p.name: p.value for p in a.assignments}
                                  for a in reply.parameter_assignments],
                  "refused": refused}))
"""


@pytest.mark.skipif(not KATIB_VENV.exists(), reason="Katib's SDK venv (.venv/katib, built by "
                    "`make install`) is missing")
def test_katibs_own_stubs_talk_to_the_service(server, tmp_path):
    """Katib's generated code (kubeflow-katib, protobuf < 5) decodes a request we encoded,
    sends it to the service, and the reply it decodes is the one our own stubs get."""
    doc = with_parallel(CASES["evolution-nas"])
    controller = FakeController(doc, server)
    controller.ask(3)
    controller.finish_oldest()
    request = controller.request(2)
    ours = controller.stub.GetSuggestions(request, timeout=60)
    script = tmp_path / "katib_client.py"
    script.write_text(KATIB_CLIENT)
    done = subprocess.run([str(KATIB_VENV), str(script), str(server),
                           base64.b64encode(request.SerializeToString()).decode()],
                          capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout)
    assert api_pb2.GetSuggestionsReply.FromString(base64.b64decode(theirs["reply"])) == ours
    assert theirs["names"] == [a.trial_name for a in ours.parameter_assignments]
    assert theirs["assignments"] == [{p.name: p.value for p in a.assignments}
                                     for a in ours.parameter_assignments]
    assert theirs["refused"] == ["INVALID_ARGUMENT", "spec.algorithm.algorithmSettings[0].value:"
                                 " sample_size must be >= 1, got '0'"]
    assert Path(KATIB_VENV).exists()


# ---- hostile requests (issue 21 finding 3) -------------------------------------------------------


def ask(port: int, request: api_pb2.GetSuggestionsRequest, timeout: float = 10):
    stub = api_pb2_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    return stub.GetSuggestions(request, timeout=timeout)


def hostile(doc: dict, count: int = 1, total: int = 1, trials=()) -> api_pb2.GetSuggestionsRequest:
    return api_pb2.GetSuggestionsRequest(experiment=experiment_message(doc), trials=list(trials),
                                         current_request_number=count, total_request_number=total)


def labelled(index: str) -> api_pb2.Trial:
    return api_pb2.Trial(name="t", spec=api_pb2.TrialSpec(labels={INDEX_LABEL: index}),
                         status=api_pb2.TrialStatus(condition=api_pb2.TrialStatus.RUNNING))


def huge_range(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    doc["spec"]["parameters"][0] = {"name": "big", "parameterType": "int",
                                    "feasibleSpace": {"min": "0", "max": str(10**20)}}
    return doc


@pytest.mark.parametrize("what, request_of, field", [
    ("an int range to 1e20", lambda d: hostile(huge_range(d)),
     "feasibleSpace.max: '100000000000000000000' must be between"),
    ("a million suggestions", lambda d: hostile(d, count=1_000_000, total=1_000_000),
     "current_request_number: 1000000 is more than the 1000"),
    ("a suggestion index of 1e11", lambda d: hostile(d, total=2, trials=[labelled(str(10**11))]),
     "labels[nasflow.dev/suggestion-index]: 100000000000 is past the 100,000 trials"),
    ("a NaN bound", lambda d: hostile({**d, "spec": {**d["spec"], "parameters": [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "nan", "max": "1"}}]}}),
     "feasibleSpace.min: 'nan' must be a finite number")])
def test_absurd_requests_are_invalid_argument_at_once(server, what, request_of, field):
    """Issue 21: these grew to 22 GB or held a worker past the client's deadline; three of them
    starved the health check. Each is now refused in well under a second."""
    doc = test_suggestions.CASES["evolution-hp"]
    for _ in range(5):  # more than the 4 workers: none is held
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as refused:
            ask(server, request_of(doc))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in refused.value.details()
        assert time.monotonic() - started < 1.0, what
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server}"))
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status == \
        health_pb2.HealthCheckResponse.SERVING


def test_a_label_that_only_looks_like_a_number_is_not_ours(server):
    """"²" passed str.isdigit() and failed int(): UNKNOWN. It is a trial nasflow did not make."""
    doc = with_parallel(test_suggestions.CASES["evolution-hp"], 1)
    reply = ask(server, hostile(doc, count=1, total=1, trials=[labelled("²"), labelled("٣")]))
    assert [a.labels[INDEX_LABEL] for a in reply.parameter_assignments] == ["0"]


def mutated_request(rng: random.Random) -> api_pb2.GetSuggestionsRequest:
    """One of the service's own test experiments with extremes where numbers are."""
    doc = copy.deepcopy(test_suggestions.CASES[rng.choice(sorted(CASES))])
    odd = ["nan", "inf", "-inf", "1e20", "-1e300", "1e-300", str(10**30), "", "x", "0", "-1",
           "²", "1.5", str(2**63)]
    spaces = [p["feasibleSpace"] for p in doc["spec"].get("parameters", [])] + [
        p["feasibleSpace"] for op in doc["spec"].get("nasConfig", {}).get("operations", [])
        for p in op["parameters"]]
    for _ in range(rng.choice([0, 0, 1, 2])):
        space = rng.choice(spaces)
        if "list" in space and rng.random() < 0.5:
            space["list"] = [rng.choice(odd) for _ in range(rng.choice([0, 1, 3, 2000]))]
        else:
            space[rng.choice(["min", "max", "step"])] = rng.choice(odd)
    settings = doc["spec"]["algorithm"].setdefault("algorithmSettings", [])
    if rng.random() < 0.3:
        settings.append({"name": rng.choice(["population_size", "sample_size", "random_state",
                                             "objectives", "crossover_prob", "bogus"]),
                         "value": rng.choice(odd)})
    if "nasConfig" in doc["spec"] and rng.random() < 0.3:
        doc["spec"]["nasConfig"]["graphConfig"]["numLayers"] = rng.choice([0, 64, 65, 2**31 - 1])
    count = rng.choice([1, 1, 2, 3, 0, 1000, 1001, 10**6, 2**31 - 1])
    total = min(count + rng.choice([0, 0, 1, 5, 10**5, 2**31]), 2**31 - 1)  # int32 on the wire
    trials = [labelled(rng.choice([str(rng.randint(0, 20)), "²", "-1", str(10**5), "1e5",
                                   str(2**40)])) for _ in range(rng.choice([0, 1, 5]))]
    return hostile(doc, count, total, trials)


def test_service_fuzz_every_reply_is_ok_or_invalid_argument_in_time(server):
    """300 mutated GetSuggestions and ValidateAlgorithmSettings requests over real gRPC: each
    answered OK or INVALID_ARGUMENT within its 10 s deadline, the health check SERVING
    throughout, memory bounded."""
    import resource

    rng = random.Random(20261205)
    stub = api_pb2_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{server}"))
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"127.0.0.1:{server}"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    codes: dict[str, int] = {}
    for i in range(300):
        request = mutated_request(rng)
        started = time.monotonic()
        try:
            if i % 3 == 0:
                stub.ValidateAlgorithmSettings(api_pb2.ValidateAlgorithmSettingsRequest(
                    experiment=request.experiment), timeout=10)
            else:
                stub.GetSuggestions(request, timeout=10)
            code = grpc.StatusCode.OK
        except grpc.RpcError as exc:
            code = exc.code()
        assert code in (grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT), (i, code)
        assert time.monotonic() - started < 10
        codes[code.name] = codes.get(code.name, 0) + 1
        if i % 20 == 0:
            assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status \
                == health_pb2.HealthCheckResponse.SERVING
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 300, grown_mib
    assert codes.get("OK", 0) >= 30 and codes.get("INVALID_ARGUMENT", 0) >= 100, codes


def test_concurrent_calls_wait_briefly_for_a_slot(server):
    """50 trivial GetSuggestions at once (3 slots): each waits for a slot within its deadline
    and is answered; none is refused RESOURCE_EXHAUSTED (Katib itself sends one at a time:
    pipeline/service/limits.py)."""
    from concurrent.futures import ThreadPoolExecutor

    doc = with_parallel(CASES["evolution-hp"])
    request = api_pb2.GetSuggestionsRequest(experiment=experiment_message(doc),
                                            current_request_number=1, total_request_number=1)
    stub = api_pb2_grpc.SuggestionStub(grpc.insecure_channel(f"127.0.0.1:{server}"))

    def ask(_: int) -> str:
        try:
            stub.GetSuggestions(request, timeout=10)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(ask, range(50)))
    assert answers == ["OK"] * 50, sorted(set(answers))
