"""The README's cluster story on real Katib: ``kubectl apply`` of the digits experiments (made
small, as Katib's own e2e does: 2 trials, 2 epochs), each algorithm served by nasflow's
suggestion service from Katib's katib-config, trials as Jobs with Katib's injected metrics
collector, runs in the host's MLflow. The five run at once and each test reads its own."""

from __future__ import annotations

import pytest
import yaml

from tests.e2e.conftest import experiment, succeeded_with_runs

DIGITS = {"random": ("random-digits.yaml", None, {}), "tpe": ("tpe-digits.yaml", None, {}),
          "enas": ("enas-digits.yaml", None, {}),
          # DARTS' epochs are its algorithm's setting (the search in one trial)
          "darts": ("darts-digits.yaml", None, {"num_epochs": "3", "warmup_epochs": "1"}),
          "mnas-evolution": ("mnas-digits.yaml", "mnas-evolution-digits", {})}


@pytest.fixture(scope="module")
def digits(cluster):
    """Every digits experiment applied with kubectl, then followed to its end."""
    cluster.kubectl("apply", "-k", "manifests/base")
    bodies = {key: experiment(file, name, settings=settings)
              for key, (file, name, settings) in DIGITS.items()}
    cluster.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(bodies.values()))
    client = cluster.client()
    done = {key: client.wait(body["metadata"]["name"], timeout=1500)
            for key, body in bodies.items()}
    yield done
    for body in bodies.values():
        client.delete_experiment(body["metadata"]["name"])


@pytest.mark.parametrize("algorithm", list(DIGITS))
def test_digits_experiment_succeeds_on_katib(cluster, digits, algorithm):
    succeeded_with_runs(cluster, digits[algorithm], highest=1.5)  # a Reward may exceed 1
