"""``nasflow pipeline --config FILE``: the scheduled retraining job (the CronJob runs it; the
Kubeflow pipeline of :mod:`pipeline.kubeflow_pipelines` runs it stage by stage).

One run: render the experiment under a unique name -> the search: submit it to Katib, wait for
it, delete this pipeline's older finished experiments beyond ``retention`` (:class:`KatibSearch`;
or the embedded engine, :class:`EmbeddedSearch`) -> the story of :mod:`pipeline.lifecycle`
(final training of its best trials as Jobs, promotion through the gates against the champion on
the same test split, compression of the champion as a Job). The config file (YAML)::

    experiment: random-digits.yaml   # the Experiment manifest; relative: to the config file
    name: random-digits        # prefix of the unique names and the pipeline label (optional)
    namespace: nasflow         # optional: else the service account's namespace
    trialImage: registry.example.com/nasflow-trial:1.2   # optional: replaces the template's
    model: nasflow-digits      # registered model; default: the prefix
    minImprovement: 0.002      # champion moves only when better by this much
    metric: Test-Accuracy      # optional: compare on this run metric instead of the objective
                               #   (with final training: instead of the final run's test measure)
    minimizeMetric: false      # with metric: lower is better
    timeoutSeconds: 7200
    retention: 5               # finished experiments of this pipeline to keep (>= 1)
    finalize:                  # final training (default: on, these values); false: promote the
      topK: 3                  #   search's optimal trial itself
      seeds: 1
      epochs: 30
      lrSchedule: cosine       # cosine | constant
      augment: light           # light | none
    gates:                     # a final model failing one stays challenger (default: none)
      minAccuracy: 0.98
      maxLatencyMs: 25
      maxParameters: 500000
      metrics: "Test-R2>=0.4"  # conditions on any run metric, comma-separated (regression:
                               #   Test-RMSE<=55)
    compress:                  # variants of a new champion, as a Job (default: on, all of
      variants: float32,int8-full,pruned-50   #   them); false: off
      maxAccuracyDrop: 0.5     # points; a variant further below is logged, not registered
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from pipeline.cluster.client import KatibClient, condition, finished
from pipeline.cluster.reconcile import end_orphaned_runs
from pipeline.cluster.render import render, slug, unique_name
from pipeline.compression import CompressionPlan
from pipeline.finalize.plan import Schedule
from pipeline.katib import safe_yaml
from pipeline.katib.status import ExperimentCondition
from pipeline.lifecycle import Decisions, KatibPlace, LocalPlace, Outcome, preflight, tell
from pipeline.promotion.gates import Gates

PIPELINE_LABEL = "nasflow.dev/pipeline"
FIELDS = {"experiment", "name", "namespace", "trialImage", "model", "minImprovement", "metric",
          "minimizeMetric", "timeoutSeconds", "retention", "finalize", "gates", "compress"}
SCHEDULE_FIELDS = {"topK": "top_k", "seeds": "seeds", "epochs": "epochs",
                   "lrSchedule": "lr_schedule", "augment": "augment", "ensemble": "ensemble"}
GATE_FIELDS = {"minAccuracy": "min_accuracy", "maxLatencyMs": "max_latency_ms",
               "maxParameters": "max_parameters", "metrics": "metrics"}
COMPRESS_FIELDS = {"variants": "variants", "maxAccuracyDrop": "max_accuracy_drop"}


class ConfigError(ValueError):
    """The config file is wrong (exit code 2); the message names the field."""


@dataclass(frozen=True)
class PipelineConfig:
    experiment: Path
    prefix: str
    model: str
    namespace: str | None = None
    trial_image: str | None = None
    min_improvement: float = 0.0
    metric: str | None = None
    minimize_metric: bool = False
    timeout: float = 7200.0
    retention: int = 5
    schedule: Schedule | None = field(default_factory=Schedule)  # None: no final training
    gates: Gates = field(default_factory=Gates)
    compress: CompressionPlan | None = field(default_factory=CompressionPlan)  # None: off

    @property
    def label(self) -> str:
        return slug(self.prefix, 63)

    @property
    def decisions(self) -> Decisions:
        """What the run decides with: the fields ``nasflow run``'s flags give locally."""
        return Decisions(self.model, self.schedule, min_improvement=self.min_improvement,
                         metric=self.metric, maximize=not self.minimize_metric,
                         gates=self.gates, compress=self.compress)

    @classmethod
    def load(cls, path: Path) -> PipelineConfig:
        try:
            documents = safe_yaml.load_all(path.read_bytes())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except (safe_yaml.UnsafeYaml, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: {' '.join(str(exc).split())}") from None
        return cls.from_document(documents[0] if len(documents) == 1 else None, str(path),
                                 path.parent)

    @classmethod
    def from_document(cls, raw: Any, path: str, base: Path) -> PipelineConfig:
        """The config of a parsed document; ``path`` names it in errors, ``experiment`` is
        relative to ``base``."""
        if not isinstance(raw, dict) or "experiment" not in raw:
            raise ConfigError(f"{path}: `experiment` (the Experiment manifest) is required")
        unknown = sorted(set(raw) - FIELDS)
        if unknown:
            raise ConfigError(f"{path}: unknown field(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(FIELDS))}")
        experiment = base / str(raw["experiment"])
        prefix = raw.get("name")
        if not prefix:
            try:
                prefix = safe_yaml.load_all(experiment.read_bytes())[0]["metadata"]["name"]
            except (OSError, yaml.YAMLError, safe_yaml.UnsafeYaml, LookupError,
                    TypeError) as exc:
                raise ConfigError(f"{path}: experiment: cannot read {experiment}: {exc}") from None
        try:
            config = cls(
                experiment=experiment, prefix=str(prefix), model=str(raw.get("model") or prefix),
                namespace=raw.get("namespace"), trial_image=raw.get("trialImage"),
                min_improvement=float(raw.get("minImprovement", 0.0)), metric=raw.get("metric"),
                minimize_metric=_flag(path, raw, "minimizeMetric"),
                timeout=float(raw.get("timeoutSeconds", 7200)),
                retention=int(raw.get("retention", 5)),
                schedule=_section(path, raw, "finalize", SCHEDULE_FIELDS, Schedule),
                gates=_section(path, raw, "gates", GATE_FIELDS, Gates) or Gates(),
                compress=_section(path, raw, "compress", COMPRESS_FIELDS, CompressionPlan))
        except ConfigError:
            raise  # names the file and the field already
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
        if config.retention < 1:
            raise ConfigError(f"{path}: retention must be >= 1 (the run just finished is kept)")
        return config


def _flag(path: str, raw: dict[str, Any], key: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}: {key}: {value!r} is not true or false")
    return value


def _section(path: str, raw: dict[str, Any], key: str, fields: dict[str, str], kind: type
             ) -> Any:
    """``finalize`` / ``gates``: a mapping of known fields (``false``: off), each value of its
    default's type; ConfigError names the field."""
    section = raw.get(key, {})
    if section is False or section is None:
        return None
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {key}: a mapping of {', '.join(fields)} (or false)")
    unknown = sorted(set(section) - set(fields))
    if unknown:
        raise ConfigError(f"{path}: {key}: unknown field(s) {', '.join(unknown)}; known: "
                          f"{', '.join(fields)}")
    values = {}
    for name, value in section.items():
        default = getattr(kind(), fields[name])
        want = str if isinstance(default, str) else int if isinstance(default, int) else float
        if isinstance(value, bool) or not isinstance(value, (str, int, float)) or \
                (want is not str and isinstance(value, str)) or \
                (want is int and not float(value).is_integer()):
            raise ConfigError(f"{path}: {key}.{name}: {value!r} is not {want.__name__}")
        values[fields[name]] = want(value)
    try:
        return kind(**values)
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}: {exc}") from None


def prepare(config: PipelineConfig, raw: dict[str, Any], now: datetime | None = None
            ) -> dict[str, Any]:
    """The Experiment body this run submits: unique name, pipeline label, trial image."""
    return render(raw, name=unique_name(config.prefix, now or datetime.now(UTC)),
                  namespace=config.namespace, image=config.trial_image,
                  labels={PIPELINE_LABEL: config.label})


class KatibSearch:
    """The search runs on Katib: submitted under its unique name and waited for; final training
    and compression run as Jobs (or TrainJobs) of its trial template."""

    def __init__(self, client: KatibClient, on_update: Callable[[Any], None] | None = None
                 ) -> None:
        self.client = client
        self.on_update = on_update

    def search(self, config: PipelineConfig, body: dict[str, Any], tracking_uri: str,
               log: Callable[[str], None], retry_seconds: float) -> dict[str, Any]:
        name = body["metadata"]["name"]
        self.client.create_experiment(body)
        log(f"submitted experiment {name} to namespace {self.client.namespace}")
        experiment = self.client.wait(name, config.timeout, self.on_update)
        ended = end_orphaned_runs(name, self.client.namespace, self.client.list_trials(name),
                                  tracking_uri, retry_seconds)
        if ended:
            log(f"ended {len(ended)} MLflow run(s) left running by trials Katib ended: "
                + ", ".join(ended))
        optimal = experiment.status.current_optimal_trial
        return {"experiment": name, "namespace": self.client.namespace,
                "phase": condition(experiment),
                "conditions": [c.to_dict() for c in experiment.status.conditions or []],
                "optimalTrial": optimal.best_trial_name if optimal else None}

    def place(self, config: PipelineConfig, name: str, tracking_uri: str,
              log: Callable[[str], None], retry_seconds: float) -> KatibPlace:
        return KatibPlace(self.client, name, tracking_uri, config.timeout, config.trial_image,
                          log, retry_seconds)

    def prune(self, config: PipelineConfig, keep: str) -> list[str]:
        """Delete this pipeline's finished experiments beyond ``retention``, oldest first; the
        one just run (``keep``) and running ones are never deleted. Returns the deleted names."""
        mine = self.client.list_experiments(f"{PIPELINE_LABEL}={config.label}")
        done = sorted((e for e in mine if finished(e) and e.metadata.name != keep),
                      key=lambda e: (e.metadata.creation_timestamp, e.metadata.name),
                      reverse=True)
        deleted = []
        for experiment in done[config.retention - 1:]:
            self.client.delete_experiment(experiment.metadata.name)
            deleted.append(experiment.metadata.name)
        return deleted


class EmbeddedSearch:
    """The search runs on the embedded engine (state in ``workdir/<name>``); final training and
    compression as local processes. Its experiments are kept: ``retention`` is Katib's."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def search(self, config: PipelineConfig, body: dict[str, Any], tracking_uri: str,
               log: Callable[[str], None], retry_seconds: float) -> dict[str, Any]:
        from pipeline.engine.experiment import EngineOptions, ExperimentEngine
        from pipeline.katib.manifest import Manifest
        from pipeline.validation import validate

        name = body["metadata"]["name"]
        experiment, problems = validate(name, body)
        if problems:  # the caller validated the manifest; only a rendering could break it
            raise ConfigError("; ".join(str(p) for p in problems))
        log(f"running experiment {name} on the embedded engine in {self.workdir}")
        status = ExperimentEngine(Manifest(name, body, experiment), EngineOptions(
            workdir=self.workdir, tracking_uri=tracking_uri,
            mlflow_retry_seconds=retry_seconds)).run()
        optimal = status["currentOptimalTrial"]
        return {"experiment": name, "namespace": experiment.metadata.namespace or "default",
                "phase": status["conditions"][-1]["type"], "conditions": status["conditions"],
                "optimalTrial": optimal["bestTrialName"] if optimal else None}

    def place(self, config: PipelineConfig, name: str, tracking_uri: str,
              log: Callable[[str], None], retry_seconds: float) -> LocalPlace:
        from pipeline.finalize.candidates import from_state

        template = from_state(self.workdir, name).experiment.spec.trial_template
        return LocalPlace(name, self.workdir, template, tracking_uri, log, retry_seconds)

    def prune(self, config: PipelineConfig, keep: str) -> list[str]:
        return []


SearchEngine = KatibSearch | EmbeddedSearch


def run_pipeline(config: PipelineConfig, raw: dict[str, Any], engine: SearchEngine,
                 tracking_uri: str, log: Callable[[str], None], retry_seconds: float = 20.0,
                 only: str | None = None, told: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Search, prune, then the story of :mod:`pipeline.lifecycle`; the result for ``--output
    json``. ``only``: one stage (``search`` or one of the story's), given what the stages
    before it ``told`` (a Kubeflow Pipelines step). The experiment is validated by the caller.
    """
    if only in (None, "search"):
        preflight(config.decisions, tracking_uri, retry_seconds)
        result = engine.search(config, prepare(config, raw), tracking_uri, log, retry_seconds)
        result["final"] = result["promotion"] = result["compression"] = None
        result["deleted"] = engine.prune(config, keep=result["experiment"])
        if result["deleted"]:
            log(f"deleted {len(result['deleted'])} older experiment(s): "
                + ", ".join(result["deleted"]))
        name = result["experiment"]
        if result["phase"] != ExperimentCondition.SUCCEEDED:  # as after nasflow run and submit
            log(f"experiment {name} ended {result['phase']}: no final training, nothing promoted")
        elif not result["optimalTrial"]:
            log(f"experiment {name} has no optimal trial; nothing to promote")
    else:
        result = dict(told or {})
    if only == "search" or result["phase"] != ExperimentCondition.SUCCEEDED or \
            not result["optimalTrial"]:
        return result
    place = engine.place(config, result["experiment"], tracking_uri, log, retry_seconds)
    outcome = tell(place, config.decisions, tracking_uri, log, retry_seconds,
                   Outcome.from_dict(result), only)
    decision = outcome.decision
    if decision and only in (None, "promote"):
        log(f"model {decision.model} version {decision.version}: {decision.decision} "
            f"(champion is version {decision.champion})"
            + (f": {decision.reason}" if decision.reason else ""))
    result.update(outcome.to_dict())
    return result
