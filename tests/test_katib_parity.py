"""``nasflow validate`` and the engine's collector agree with Katib: the cases of Katib's own
webhook-validator tests (``pkg/webhook/v1beta1/experiment/validator/validator_test.go``) and
file-metrics-collector tests (``pkg/metricscollector/v1beta1/file-metricscollector``), re-stated
as manifests and files, each with Katib's verdict.

Katib's unit tests call the validator without its defaulter; a cluster runs the defaulter first.
Where that changes the verdict the case says so and follows the cluster. Where nasflow is
deliberately stricter (Katib admits the experiment and then fails every trial, or needs the
cluster to tell), the case is marked ``STRICTER`` with the reason; the README lists them.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from pipeline.engine.metrics_collector import CollectorError, collect
from pipeline.validation import validate
from pipeline.validation.trial_job import check_job

# Katib's newFakeInstance, with an algorithm and early stopping Katib's config really has.
BASE = yaml.safe_load("""
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: fake, namespace: fakens}
spec:
  maxTrialCount: 6
  metricsCollectorSpec: {collector: {kind: StdOut}}
  objective: {type: maximize, goal: 0.11, objectiveMetricName: testme}
  algorithm: {algorithmName: random}
  earlyStopping: {algorithmName: medianstop}
  parameters:
    - {name: lr, parameterType: int, feasibleSpace: {max: "5", min: "1", distribution: uniform}}
    - {name: momentum, parameterType: categorical, feasibleSpace: {list: ["0.95", "0.85", "0.75"]}}
  trialTemplate:
    primaryContainerName: training-container
    successCondition: status.conditions.#(type=="Complete")#|#(status=="True")#
    failureCondition: status.conditions.#(type=="Failed")#|#(status=="True")#
    trialParameters:
      - {name: learningRate, description: Learning rate, reference: lr}
      - {name: momentum, description: Momentum for the training model, reference: momentum}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: training-container
                image: ghcr.io/kubeflow/katib/pytorch-mnist-cpu
                command: [python3, --epochs=1, --batch-size=16, /opt/pytorch-mnist/mnist.py,
                          "--lr=${trialParameters.learningRate}",
                          "--momentum=${trialParameters.momentum}"]
""")
DELETE = object()
STRICTER = "stricter"


def changed(*edits: tuple[str, Any]) -> dict:
    """BASE with ``path = value`` edits (dotted paths, list indices as numbers)."""
    doc = copy.deepcopy(BASE)
    for path, value in edits:
        *parents, last = path.split(".")
        node = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        key = int(last) if last.isdigit() else last
        if value is DELETE:
            del node[key]
        elif isinstance(node, list) and key == len(node):
            node.append(value)
        else:
            node[key] = value
    return doc


CONTAINER = "spec.trialTemplate.trialSpec.spec.template.spec.containers.0"
COMMAND = f"{CONTAINER}.command"
NAS = {"graphConfig": {"numLayers": 1, "inputSizes": [8, 8, 1], "outputSizes": [10]},
       "operations": [{"operationType": "convolution", "parameters": [
           {"name": "filter_size", "parameterType": "categorical",
            "feasibleSpace": {"list": ["3"]}}]}]}
MC = "spec.metricsCollectorSpec"

# (Katib's description, the manifest, Katib's error paths; [] = admitted)
VALIDATOR_CASES: list[tuple[str, dict, list[str] | str]] = [
    # TestValidateExperiment
    ("Name is invalid", changed(("metadata.name", "1234-test")), ["metadata.name"]),
    ("Name is too long", changed(("metadata.name",
                                  "test-manymanymanyextracharactersthatgobeyondlimit")),
     ["metadata.name"]),
    ("Objective is nil", changed(("spec.objective", DELETE)), ["spec.objective"]),
    ("Objective type is unknown", changed(("spec.objective.type", "")), ["spec.objective.type"]),
    ("Objective metric name is empty", changed(("spec.objective.objectiveMetricName", "")),
     ["spec.objective.objectiveMetricName"]),
    ("additionalMetricNames should not contain objective metric name",
     changed(("spec.objective.objectiveMetricName", "objective"),
             ("spec.objective.additionalMetricNames", ["objective", "objective-1"])),
     ["spec.objective.additionalMetricNames"]),
    ("Algorithm is nil", changed(("spec.algorithm", DELETE)), ["spec.algorithm"]),
    ("Algorithm name is empty", changed(("spec.algorithm.algorithmName", "")),
     ["spec.algorithm.algorithmName"]),
    ("EarlyStopping is nil", changed(("spec.earlyStopping", DELETE)), []),
    ("EarlyStopping AlgorithmName is empty", changed(("spec.earlyStopping.algorithmName", "")),
     ["spec.earlyStopping.algorithmName"]),
    ("Run validator for correct experiment", changed(), []),
    ("Max failed trial count is negative", changed(("spec.maxFailedTrialCount", -1)),
     ["spec.maxFailedTrialCount"]),
    ("Max trial count is negative", changed(("spec.maxTrialCount", -1)), ["spec.maxTrialCount"]),
    ("Parallel trial count is negative", changed(("spec.parallelTrialCount", -1)),
     ["spec.parallelTrialCount"]),
    ("Invalid resume policy", changed(("spec.resumePolicy", "invalid-policy")),
     ["spec.resumePolicy"]),
    ("Parameters and NAS config is nil", changed(("spec.parameters", [])), ["spec"]),
    ("Parameters and NAS config is not nil",
     changed(("spec.nasConfig", {"operations": [{"operationType": "op1"}]})), ["spec"]),
    ("Trial template is nil", changed(("spec.trialTemplate", DELETE)), ["spec.trialTemplate"]),
    ("Invalid feasible space in parameters",
     changed(("spec.parameters.1.feasibleSpace.max", "5")), ["spec.parameters[1].feasibleSpace"]),
    ("maxFailedTrialCount greater than maxTrialCount",
     changed(("spec.maxTrialCount", 5), ("spec.maxFailedTrialCount", 6)),
     ["spec.maxFailedTrialCount"]),
    ("maxFailedTrialCount equal to maxTrialCount",
     changed(("spec.maxTrialCount", 5), ("spec.maxFailedTrialCount", 5)), []),
    ("parallelTrialCount greater than maxTrialCount",
     changed(("spec.maxTrialCount", 5), ("spec.parallelTrialCount", 6)),
     ["spec.parallelTrialCount"]),
    ("parallelTrialCount equal to maxTrialCount",
     changed(("spec.maxTrialCount", 5), ("spec.parallelTrialCount", 5)), []),
    # TestValidateParameters
    ("Invalid parameter type", changed(("spec.parameters.0.parameterType", "invalid-type")),
     ["spec.parameters[0].parameterType"]),
    ("Feasible space is nil", changed(("spec.parameters.0.feasibleSpace", {})),
     ["spec.parameters[0].feasibleSpace"]),
    ("Not empty list for int parameter type",
     changed(("spec.parameters.0.feasibleSpace.list", ["invalid-list"])),
     ["spec.parameters[0].feasibleSpace.list"]),
    ("Empty max and min for int parameter type",
     changed(("spec.parameters.0.feasibleSpace", {"max": "", "min": "", "step": "1"})),
     ["spec.parameters[0].feasibleSpace.max"]),
    ("Not empty max for categorical parameter type",
     changed(("spec.parameters.1.feasibleSpace.max", "1")), ["spec.parameters[1].feasibleSpace"]),
    ("Step for a discrete parameter",
     changed(("spec.parameters.1.parameterType", "discrete"),
             ("spec.parameters.1.feasibleSpace.step", "0.1")),
     ["spec.parameters[1].feasibleSpace"]),
    ("Invalid distribution type",
     changed(("spec.parameters.0.feasibleSpace.distribution", "invalid-distribution")),
     ["spec.parameters[0].feasibleSpace.distribution"]),
    # TestValidateTrialTemplate
    ("Trial parameters is nil", changed(("spec.trialTemplate.trialParameters", DELETE)),
     ["spec.trialTemplate.trialParameters"]),
    ("Trial spec nil", changed(("spec.trialTemplate.trialSpec", DELETE)),
     ["spec.trialTemplate.TrialSource"]),
    ("Trial spec and ConfigMap is not nil",
     changed(("spec.trialTemplate.configMap", {
         "configMapName": "config-map-name", "configMapNamespace": "config-map-namespace",
         "templatePath": "config-map-template-path"})), ["spec.trialTemplate"]),
    ("Missed template path in ConfigMap",
     changed(("spec.trialTemplate.trialSpec", DELETE), ("spec.trialTemplate.configMap", {
         "configMapName": "config-map-name", "configMapNamespace": "config-map-namespace"})),
     ["spec.trialTemplate.configMap"]),
    ("Empty reference or name in Trial parameters",
     changed(("spec.trialTemplate.trialParameters.0.reference", "")),
     ["spec.trialTemplate.trialParameters[0]", "spec.trialTemplate"]),
    ("Wrong name in Trial parameters",
     changed(("spec.trialTemplate.trialParameters.0.name", "{invalid-name}")),
     ["spec.trialTemplate.trialParameters[0]", "spec.trialTemplate"]),
    ("Duplicate name in Trial parameters",
     changed(("spec.trialTemplate.trialParameters.1.name", "learningRate")),
     ["spec.trialTemplate.trialParameters[1].name", "spec.trialTemplate"]),
    ("Duplicate reference in Trial parameters",
     changed(("spec.trialTemplate.trialParameters.1.reference", "lr")),
     ["spec.trialTemplate.trialParameters[1].reference", "spec.trialTemplate"]),
    ("Trial parameter referenced from nowhere in spec.parameters",
     changed(("spec.trialTemplate.trialParameters.1.reference", "wrong-ref")),
     ["spec.trialTemplate.trialParameters[1].reference"]),
    # Katib admits it: NAS references are only checked when a trial is created, and fail it.
    ("Trial parameters with an unknown reference when spec.parameters is empty (NAS)",
     changed(("spec.parameters", DELETE), ("spec.algorithm.algorithmName", "enas"),
             ("spec.nasConfig", NAS),
             ("spec.trialTemplate.trialParameters",
              [{"name": "learningRate", "reference": "architecture"},
               {"name": "momentum", "reference": "wrong-ref"}])), STRICTER),
    ("Trial metadata reference as parameter",
     changed(("spec.trialTemplate.trialParameters.1.reference", "${trialSpec.Name}")), []),
    # Katib admits them and fails every trial at creation: the template has no such metadata.
    ("Trial annotation reference as parameter",
     changed(("spec.trialTemplate.trialParameters.1.reference",
              "${trialSpec.Annotations[test-annotation]}")), STRICTER),
    ("Trial's label reference as parameter",
     changed(("spec.trialTemplate.trialParameters.1.reference",
              "${trialSpec.Labels[test-label]}")), STRICTER),
    ("Trial template doesn't contain parameter from Trial parameters",
     changed((f"{COMMAND}.4", "--lr=${trialParameters.invalidParameter}")),
     ["spec.trialTemplate"]),
    ("Trial template contains extra parameter",
     changed((f"{COMMAND}.6", "--extra-parameter=${trialParameters.extraParameter}")),
     ["spec.trialTemplate"]),
    ("Trial template without the second parameter",
     changed((COMMAND, ["--invalidParameter={'num_layers': 2, 'input_sizes': [32, 32, 3]}",
                        "--lr=${trialParameters.learningRate}\"",
                        "--num-layers=${trialParameters.numberLayers}"])),
     ["spec.trialTemplate.trialParameters[1].name"]),
    ("Trial template contains metadata.name or metadata.namespace",
     changed(("spec.trialTemplate.trialSpec.metadata",
              {"name": "trial-name", "namespace": "trial-namespace"})), ["spec.trialTemplate"]),
    ("Trial template doesn't contain APIVersion",
     changed(("spec.trialTemplate.trialSpec.apiVersion", DELETE)), ["spec.trialTemplate"]),
    ("Trial template has custom Kind", changed(("spec.trialTemplate.trialSpec.kind",
                                                "CustomKind")), []),
    ("Trial template doesn't have PrimaryContainerName",
     changed(("spec.trialTemplate.primaryContainerName", "")),
     ["spec.trialTemplate.primaryContainerName"]),
    # Katib's unit test calls the validator alone; on a cluster the defaulter fills the Job's
    # successCondition first and the experiment is admitted.
    ("Job without SuccessCondition (defaulted)",
     changed(("spec.trialTemplate.successCondition", "")), []),
    ("Custom kind without SuccessCondition",
     changed(("spec.trialTemplate.trialSpec.kind", "CustomKind"),
             ("spec.trialTemplate.successCondition", "")), ["spec.trialTemplate"]),
    # TestValidateTrialJob, as whole experiments
    ("Trial template has invalid Batch Job parameter",
     changed((f"{CONTAINER[:-2]}", {"name": "container-must-be-list"})),
     ["spec.trialTemplate"]),
    ("Trial template has invalid Batch Job structure",
     changed(("spec.trialTemplate.trialSpec.spec.template.invalidSpec", "not-job-format")),
     ["spec.trialTemplate"]),
    ("Valid case with nvidia.com/gpu resource in Trial template",
     changed((f"{CONTAINER}.resources", {"limits": {"nvidia.com/gpu": 1},
                                         "requests": {"nvidia.com/gpu": 1, "cpu": "500m"}})),
     []),
    # TestValidateMetricsCollector
    ("Invalid metrics collector Kind", changed((MC, {"collector": {"kind": "invalid-kind"}})),
     [f"{MC}.collector.kind"]),
    ("Invalid path for File metrics collector",
     changed((MC, {"collector": {"kind": "File"}, "source": {"fileSystemPath": {
         "path": "not/absolute/path", "format": "TEXT"}}})),
     [f"{MC}.source.fileSystemPath.path"]),
    ("Invalid path for TF event metrics collector",
     changed((MC, {"collector": {"kind": "TensorFlowEvent"},
                   "source": {"fileSystemPath": {"path": "not/absolute/path"}}})),
     [f"{MC}.source"]),
    ("Invalid file format for TF event metrics collector",
     changed((MC, {"collector": {"kind": "TensorFlowEvent"}, "source": {"fileSystemPath": {
         "path": "/absolute/path", "format": "JSON", "kind": "Directory"}}})),
     [f"{MC}.source.fileSystemPath.format"]),
    ("Invalid port for Prometheus metrics collector",
     changed((MC, {"collector": {"kind": "PrometheusMetric"},
                   "source": {"httpGet": {"port": "Port"}}})),
     [f"{MC}.source.httpGet.port"]),
    ("Invalid path for Prometheus metrics collector",
     changed((MC, {"collector": {"kind": "PrometheusMetric"},
                   "source": {"httpGet": {"port": 8888, "path": "not/valid/path"}}})),
     [f"{MC}.source.httpGet.path"]),
    ("Prometheus metrics collector on an integer port",
     changed((MC, {"collector": {"kind": "PrometheusMetric"},
                   "source": {"httpGet": {"port": 8080, "path": "/metrics"}}})), []),
    ("Prometheus metrics collector with the defaults", changed((MC, {"collector": {
        "kind": "PrometheusMetric"}})), []),
    ("Empty container for Custom metrics collector",
     changed((MC, {"collector": {"kind": "Custom"}})), [f"{MC}.collector.customCollector"]),
    ("Invalid path for Custom metrics collector",
     changed((MC, {"collector": {"kind": "Custom", "customCollector": {"name": "my-collector"}},
                   "source": {"fileSystemPath": {"path": "not/absolute/path"}}})),
     [f"{MC}.source.fileSystemPath"]),
    ("Invalid metrics format regex for File metrics collector",
     changed((MC, {"collector": {"kind": "File"}, "source": {
         "filter": {"metricsFormat": ["["]},
         "fileSystemPath": {"path": "/absolute/path", "kind": "File", "format": "TEXT"}}})),
     [f"{MC}.source.filter.metricsFormat"]),
    ("One subexpression in metrics format",
     changed((MC, {"collector": {"kind": "File"}, "source": {
         "filter": {"metricsFormat": ["{metricName: ([\\w|-]+)}"]},
         "fileSystemPath": {"path": "/absolute/path", "kind": "File", "format": "TEXT"}}})),
     [f"{MC}.source.filter.metricsFormat"]),
    ("Invalid file format for File metrics collector",
     changed((MC, {"collector": {"kind": "File"}, "source": {
         "fileSystemPath": {"path": "/absolute/path", "kind": "File", "format": "invalid"}}})),
     [f"{MC}.source.fileSystemPath.format"]),
    ("Invalid metrics filter for File metrics collector when file format is JSON",
     changed((MC, {"collector": {"kind": "File"}, "source": {
         "filter": {}, "fileSystemPath": {"path": "/absolute/path", "kind": "File",
                                          "format": "JSON"}}})),
     [f"{MC}.source.filter"]),
    ("Run validator for correct File metrics collector",
     changed((MC, {"collector": {"kind": "File"}, "source": {
         "fileSystemPath": {"path": "/absolute/path", "kind": "File", "format": "JSON"}}})),
     []),
    # The defaulter fills a File or TensorFlowEvent collector's source.
    ("File metrics collector without a source", changed((MC, {"collector": {"kind": "File"}})),
     []),
    ("TF event metrics collector without a source",
     changed((MC, {"collector": {"kind": "TensorFlowEvent"}})), []),
    ("Metric strategy for a metric that is not collected",
     changed(("spec.objective.metricStrategies", [{"name": "other", "value": "min"}])), []),
]


@pytest.mark.parametrize(("description", "doc", "katib"), VALIDATOR_CASES,
                         ids=[c[0] for c in VALIDATOR_CASES])
def test_validator_agrees_with_katib(description, doc, katib):
    _, problems = validate("fake.yaml", doc)
    paths = [p.path for p in problems]
    if katib == []:
        assert problems == [], problems
    elif katib == STRICTER:
        assert problems and all("Katib would fail every trial" in p.message for p in problems)
    else:
        for expected in katib:  # Katib's path or a more precise one below it
            assert any(p.startswith(expected) or expected.startswith(p) for p in paths), problems


@pytest.mark.parametrize(("job", "refused"), [
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {
        "containers": {"name": "container-must-be-list"}}}}}, True),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {
        "invalidSpec": "not-job-format", "spec": {"containers": [{"name": "invalid-list"}]}}}},
     True),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": [
        {"resources": {"limits": {"nvidia.com/gpu": 1}, "requests": {"nvidia.com/gpu": 1}}}]}}}},
     False),
    ({"apiVersion": "test/v1", "kind": "Job", "spec": {"template": {"spec": {
        "containers": [{"name": "container"}]}}}}, False),
    ({"apiVersion": "batch/v1", "kind": "Job", "spec": {"activeDeadlineSeconds": "soon"}}, True),
], ids=["containers-mapping", "unknown-field", "gpu-resources", "not-a-kubernetes-job",
        "string-for-integer"])
def test_trial_job_conversion_as_katib(job, refused):
    """TestValidateTrialJob: the template must convert to batch/v1 Job; other kinds pass."""
    assert bool(check_job(job, "spec.trialTemplate.trialSpec")) is refused


# ---- the file metrics collector --------------------------------------------------------------

TEXT_FILTER = ["{metricName: ([\\w|-]+), metricValue: ((-?\\d+)(\\.\\d+)?)}"]
UNSET = "0001-01-01T00:00:00Z"
COLLECTOR_CASES = {
    "Positive case for logs in JSON format": (
        """{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721, "trial": "0"}
{"acc": "0.9349666833877563", "checkpoint_path": "", "global_step": "0", "timestamp": 1638422847.287801, "trial": "0"}
{"checkpoint_path": "", "global_step": "1", "loss": "0.1414974331855774", "timestamp": "2021-12-02T14:27:50.000035161Z", "trial": "0"}
{"acc": "0.9586416482925415", "checkpoint_path": "", "global_step": "1", "timestamp": "2021-12-02T14:27:50.000037459Z", "trial": "0"}
{"checkpoint_path": "", "global_step": "2", "loss": "0.10683439671993256", "trial": "0"}""",  # noqa: E501
        ["acc", "loss"], None, "JSON",
        [("2021-12-02T05:27:27.000028721Z", "loss", "0.22082142531871796"),
         ("2021-12-02T05:27:27.000287801Z", "acc", "0.9349666833877563"),
         ("2021-12-02T14:27:50.000035161Z", "loss", "0.1414974331855774"),
         ("2021-12-02T14:27:50.000037459Z", "acc", "0.9586416482925415"),
         (UNSET, "loss", "0.10683439671993256")]),
    "Positive case for logs in TEXT format": (
        """2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.8078};{metricName: loss, metricValue: 0.5183}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.6752}
2024-03-04T17:55:08Z INFO     {metricName: loss, metricValue: 0.3634}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 100}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 888.333}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: -0.4759}
{metricName: loss, metricValue: 0.8671}""",  # noqa: E501
        ["accuracy", "loss"], TEXT_FILTER, "TEXT",
        [("2024-03-04T17:55:08Z", "accuracy", "0.8078"), ("2024-03-04T17:55:08Z", "loss", "0.5183"),
         ("2024-03-04T17:55:08Z", "accuracy", "0.6752"), ("2024-03-04T17:55:08Z", "loss", "0.3634"),
         ("2024-03-04T17:55:08Z", "accuracy", "100"),
         ("2024-03-04T17:55:08Z", "accuracy", "888.333"),
         ("2024-03-04T17:55:08Z", "accuracy", "-0.4759"), (UNSET, "loss", "0.8671")]),
    "Invalid case for logs in TEXT format": (
        """2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: .333}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: -.333}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: - 345.333}
2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 888.}""",
        ["accuracy", "loss"], TEXT_FILTER, "TEXT", [(UNSET, "accuracy", "unavailable")]),
    "Invalid file name": (None, ["acc"], None, "JSON", "failed to open the file"),
    "Invalid file format": ("", ["acc"], None, "invalid", "format must be set"),
    "Invalid formatted file for logs in JSON format": (
        """"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721, "trial": "0"
{"acc": "0.9349666833877563", "checkpoint_path": "", "global_step": "0", "timestamp": 1638422847.287801, "trial": "0""",  # noqa: E501
        ["acc", "loss"], None, "JSON", "failed to parse the json object"),
    "Invalid formatted file for logs in TEXT format": (
        """2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.6752
2024-03-04T17:55:08Z INFO     {metricName: loss, metricValue: 0.3634}""",
        ["accuracy", "loss"], TEXT_FILTER, "TEXT", [(UNSET, "accuracy", "unavailable")]),
    "Invalid timestamp for logs in JSON format": (
        """{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": "invalid", "trial": "0"}
{"acc": "0.9349666833877563", "checkpoint_path": "", "global_step": "0", "timestamp": 1638422847, "trial": "0"}""",  # noqa: E501
        ["acc", "loss"], None, "JSON",
        [(UNSET, "loss", "0.22082142531871796"),
         ("2021-12-02T05:27:27Z", "acc", "0.9349666833877563")]),
    "Invalid timestamp for logs in TEXT format": (
        """2024-03-04T17:55:08Z INFO     {metricName: accuracy, metricValue: 0.6752}
invalid INFO     {metricName: loss, metricValue: 0.3634}""",
        ["accuracy", "loss"], TEXT_FILTER, "TEXT",
        [("2024-03-04T17:55:08Z", "accuracy", "0.6752"), (UNSET, "loss", "0.3634")]),
    "Missing objective metric in JSON training logs": (
        """{"checkpoint_path": "", "global_step": "0", "loss": "0.22082142531871796", "timestamp": 1638422847.28721, "trial": "0"}
{"checkpoint_path": "", "global_step": "1", "loss": "0.1414974331855774", "timestamp": "2021-12-02T14:27:50.000035161+09:00", "trial": "0"}
{"checkpoint_path": "", "global_step": "2", "loss": "0.10683439671993256", "trial": "0"}""",  # noqa: E501
        ["acc", "loss"], None, "JSON", [(UNSET, "acc", "unavailable")]),
    "Missing objective metric in TEXT training logs": (
        """2024-03-04T17:55:08Z INFO     {metricName: loss, metricValue: 0.3634}
2024-03-04T17:55:08Z INFO     {metricName: loss, metricValue: 0.8671}""",
        ["accuracy", "loss"], None, "TEXT", [(UNSET, "accuracy", "unavailable")]),
}


@pytest.mark.parametrize("case", COLLECTOR_CASES)
def test_collector_agrees_with_katib(case, tmp_path):
    content, metrics, filters, fmt, expected = COLLECTOR_CASES[case]
    path = tmp_path / "metrics.log"
    if content is not None:
        path.write_text(content)
    if isinstance(expected, str):
        with pytest.raises(CollectorError, match=expected):
            collect(path, metrics, filters, fmt)
        return
    found = collect(path, metrics, filters, fmt)
    assert [(o.timestamp, o.name, o.value) for o in found] == expected
