"""Katib's own admission webhook against ``nasflow validate``: every validator case of
tests/test_validation.py applied to the real API server (``kubectl create --dry-run=server``:
Katib's defaulting and validating webhooks and the CRD's schema run, nothing is stored)."""

from __future__ import annotations

import json

import pytest

from tests.test_validation import BASE, RULES, mutate

# Cases nasflow refuses before submission that Katib's webhook admits: Katib checks these only
# when the experiment runs (the suggestion service's ValidateAlgorithmSettings, or the trial),
# so on Katib they fail later, after the Experiment was created (docs/katib.md).
ADMITTED_BY_KATIB = {
    # the CRD keeps no schema for spec's fields and the webhook ignores unknown ones: a typo
    # is dropped silently and the Experiment runs with the default
    "spec.maxTrialCounts: unknown field (did you mean maxTrialCount?)",
    # metric strategies, algorithm settings and feasible spaces: checked by the suggestion
    # service's ValidateAlgorithmSettings when the Suggestion starts (the Experiment fails then)
    "spec.objective.metricStrategies: min, max or latest",
    "spec.algorithm.algorithmSettings: random_state must be >= 0",
    "spec.algorithm.algorithmSettings: unknown setting 'gamma' for random",
    "spec.parameters.0.feasibleSpace.min: greater than max",
    "spec.parameters.1.feasibleSpace.max: must be an int value",
    "spec.parameters.2.feasibleSpace.list: non-empty list",
    "spec.parameters.0.feasibleSpace.distribution: logUniform needs min > 0",
    # the trial template: found when the first trial's Job or pod is made
    "spec.trialTemplate.primaryContainerName: 'trainer' is not a container",
    "spec.trialTemplate.trialParameters.3.reference: has no 'owner'",
    # the collector's filter: found when the collector parses the first metric line
    "spec.metricsCollectorSpec: two capture groups",
    # early-stopping settings: the early-stopping service's validation, when it starts
    "spec.earlyStopping: start_step must be >= 1",
}
# each case named by the field it breaks and nasflow's message for it
CASES = [(f"{field}: {message}", field, value) for field, value, _, message in RULES]


@pytest.fixture(scope="module")
def verdicts(cluster):
    """case -> (Katib's webhook refused it, its message), for every case at once."""
    from pipeline.validation import validate

    out: dict[str, tuple[bool, str, bool]] = {}
    for case, field, value in [("base", None, None), *CASES]:
        body = mutate(field, value) if field else BASE
        body = {**body, "metadata": {**body["metadata"], "namespace": cluster.namespace}}
        done = cluster.kubectl("create", "--dry-run=server", "-f", "-",
                               stdin=json.dumps(body), check=False)
        out[case] = (done.returncode != 0, done.stderr.strip(), bool(validate("m.yaml", body)[1]))
    return out


def test_katib_admits_the_base_manifest(verdicts):
    refused, message, nasflow_refuses = verdicts["base"]
    assert not refused and not nasflow_refuses, message


@pytest.mark.parametrize("case", [c for c, _, _ in CASES])
def test_katib_and_nasflow_agree_or_the_difference_is_known(verdicts, case):
    """nasflow refuses every case; Katib's webhook refuses the same ones but those listed."""
    refused, message, nasflow_refuses = verdicts[case]
    assert nasflow_refuses
    if case in ADMITTED_BY_KATIB:
        assert not refused, f"Katib now refuses {case}: {message}"
    else:
        assert refused, f"Katib admits {case}"


def test_every_known_difference_is_a_case():
    assert {c for c, _, _ in CASES} >= ADMITTED_BY_KATIB
