"""The model's life told once (pipeline/lifecycle.py): ``nasflow run``, ``nasflow pipeline`` and
``nasflow submit --promote`` decide with the same fields, and on the same recorded Katib search
they end with the same final model, gates and registry decision."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from pipeline.cli import build_parser, main
from pipeline.cli.finalize import schedule_of
from pipeline.cli.promote import decisions_of
from pipeline.cluster.client import KatibClient
from pipeline.finalize.plan import Schedule
from pipeline.lifecycle import Decisions, LocalPlace
from pipeline.retraining import PipelineConfig
from tests.recorded_katib import MANIFEST_PATH, NS
from tests.test_promotion import trial_run

FLAGS = ["--model", "digits", "--metric", "Test-Macro-F1", "--minimize-metric",
         "--min-improvement", "0.01", "--min-accuracy", "0.5", "--max-parameters", "100000",
         "--gate", "Test-Loss<=3", "--top-k", "2", "--seeds", "2", "--final-epochs", "4"]


def test_the_three_commands_decide_with_the_same_fields(tmp_path):
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump({
        "experiment": str(MANIFEST_PATH), "model": "digits", "metric": "Test-Macro-F1",
        "minimizeMetric": True, "minImprovement": 0.01, "compress": False,
        "gates": {"minAccuracy": 0.5, "maxParameters": 100000, "metrics": "Test-Loss<=3"},
        "finalize": {"topK": 2, "seeds": 2, "epochs": 4}}))
    pipeline = PipelineConfig.load(config).decisions
    parser = build_parser()
    run = parser.parse_args(["run", "x.yaml", "--finalize", "--promote", *FLAGS])
    submit = parser.parse_args(["submit", "x.yaml", "--promote", *FLAGS])
    assert decisions_of(run, "digits", schedule_of(run)) == pipeline
    assert decisions_of(submit, "digits", schedule_of(submit)) == pipeline
    assert pipeline.metric == "Test-Macro-F1" and pipeline.maximize is False


@dataclass
class FinishedSearch:
    """A Workplace whose final training already happened: ``final_run`` in MLflow."""

    experiment: str
    final_run: str
    namespace: str = "default"

    def finalize(self, schedule, model, budget):
        from pipeline.finalize import FinalResult

        return FinalResult(self.experiment, "t1", self.final_run, "Test-Accuracy", 0.9, None,
                           "t1", 0.9)


def test_the_configs_metric_is_compared_with_final_training_on(mlflow_server):
    """The drift this module ended: ``nasflow pipeline`` ignored ``metric:`` whenever final
    training was on (its default), comparing on Test-Accuracy instead."""
    from pipeline.lifecycle import tell

    name = f"drift-{uuid.uuid4().hex[:6]}"
    run = trial_run(mlflow_server.uri, name, "t1", 0.91, metrics={"Test-Macro-F1": 0.42},
                    tags={"nasflow.role": "final", "nasflow.task": "classification"})
    decisions = Decisions(name, metric="Test-Macro-F1")
    outcome = tell(FinishedSearch(name, run), decisions, mlflow_server.uri, print, 5.0)
    assert outcome.decision.decision == "champion"
    assert outcome.decision.score == 0.42  # not Test-Accuracy's 0.90
    assert outcome.promoted.trial == "t1" and outcome.final.final_run == run


@dataclass
class RecordedSearchLocally(LocalPlace):
    """The recorded Katib search, its final training run as ``nasflow run --finalize`` runs it:
    local trial processes (the search itself is read from the stand-in API server, as the
    embedded engine's state would give it)."""

    client: Any = None

    def search(self) -> Any:
        from pipeline.finalize.candidates import from_katib

        return from_katib(self.client, self.experiment)


@pytest.mark.slow
def test_the_three_commands_decide_the_same_on_the_same_search(cli, mlflow_server, tmp_path,
                                                                capsys):
    """The same recorded search, told by ``nasflow pipeline``, ``nasflow submit --promote``
    (which used to promote the search's trial without final training) and the local path of
    ``nasflow run --finalize --promote`` (local processes): the same selection, winner, test
    score and registry decision."""
    from pipeline.cli.common import load_experiment
    from pipeline.lifecycle import tell
    from tests.recorded_katib import experiment
    from tests.test_finalize import Kubelet, pipeline_config, searched

    results = {}
    for command in ("pipeline", "submit"):
        kubelet = Kubelet(cli, mlflow_server.uri, tmp_path / command)
        cli.watch_script = [searched(cli, mlflow_server)] + [kubelet.watch] * 3
        model = f"same-{command}-{uuid.uuid4().hex[:6]}"
        argv = (["pipeline", "--config", pipeline_config(tmp_path, model, compress=False)]
                if command == "pipeline" else
                ["submit", str(MANIFEST_PATH), "--name-suffix", uuid.uuid4().hex[:6],
                 "--image", "registry.test/nasflow-trial:2.0", "--promote", "--model", model,
                 "--top-k", "2", "--seeds", "1", "--final-epochs", "2", "--namespace", NS])
        code = main([*argv, "--tracking-uri", mlflow_server.uri, "--output", "json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err[-3000:]
        results[command] = json.loads(captured.out)

    name = f"random-digits-local-{uuid.uuid4().hex[:6]}"
    cli.add("experiments", experiment(name=name))
    searched(cli, mlflow_server)(cli, name)  # Katib ran the recorded trials
    template = load_experiment(MANIFEST_PATH, None).experiment.spec.trial_template
    client = KatibClient(namespace=NS, api=cli.api())
    place = RecordedSearchLocally(name, tmp_path / "local", template, mlflow_server.uri, print,
                                  5.0, client=client)
    decisions = Decisions(f"same-local-{uuid.uuid4().hex[:6]}", Schedule(2, 1, 2))
    results["local"] = tell(place, decisions, mlflow_server.uri, print, 5.0).to_dict()

    def summary(result):
        final, promotion = result["final"], result["promotion"]
        return ([(row["trial"][-8:], round(row["Validation-Accuracy"], 6))
                 for row in final["selection"]], final["winner"][-8:],
                round(final["test_score"], 6), promotion["decision"], promotion["version"],
                round(promotion["score"], 6), promotion["reason"])

    assert summary(results["pipeline"]) == summary(results["submit"]) == summary(
        results["local"])
    assert len(results["local"]["final"]["selection"]) == 2
    assert results["local"]["promotion"]["decision"] == "champion"
