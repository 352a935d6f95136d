"""The pipeline's interface: a pipeline config's settings, one parameter each, both ways; and
what each step outputs.

Kubeflow Pipelines hands a step its parameters as strings; :func:`config_document` turns them
back into the config file's document, which :class:`pipeline.retraining.PipelineConfig` checks
as it checks a file, so a run's parameters are held to the same rules as the CronJob's config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.compression import CompressionPlan
from pipeline.finalize.plan import Schedule
from pipeline.retraining import ConfigError, PipelineConfig

ENGINES = ("katib", "embedded")
SWITCHES = ("finalize", "compress")  # sections a parameter turns off (the config's ``false``)


@dataclass(frozen=True)
class Parameter:
    name: str  # the config's key; a section's field is SECTION_FIELD
    kind: type  # what the config holds: str, int, float or bool
    default: Callable[[PipelineConfig], Any]  # the compiled default, from the config
    optional: bool = False  # "" means not set (a pipeline parameter cannot be null)

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.name.split("_", 1))

    @property
    def kfp_type(self) -> str:
        return "str" if self.optional else self.kind.__name__

    def parse(self, value: Any) -> Any:
        """The config value of a step's parameter (a string, or the compiled JSON value)."""
        text = str(value).strip()
        if self.kind is str:
            return str(value)
        if self.optional and text == "":
            return None
        if self.kind is bool:
            if text.lower() not in ("true", "false"):
                raise ConfigError(f"{self.name}: {value!r} is not true or false")
            return text.lower() == "true"
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{self.name}: {value!r} is not a number") from None
        if self.kind is int:
            if not number.is_integer():
                raise ConfigError(f"{self.name}: {value!r} is not an integer")
            return int(number)
        return number


def _schedule(config: PipelineConfig) -> Schedule:
    return config.schedule or Schedule()


def _plan(config: PipelineConfig) -> CompressionPlan:
    return config.compress or CompressionPlan()


def _unset(value: Any) -> str:
    return "" if value is None else str(value)


# The config's fields in its file's order (pipeline/retraining.py), then where the steps run.
PARAMETERS = (
    Parameter("name", str, lambda c: c.prefix),
    Parameter("namespace", str, lambda c: c.namespace or ""),
    Parameter("trialImage", str, lambda c: c.trial_image or ""),
    Parameter("model", str, lambda c: c.model),
    Parameter("minImprovement", float, lambda c: c.min_improvement),
    Parameter("metric", str, lambda c: c.metric or ""),
    Parameter("minimizeMetric", bool, lambda c: c.minimize_metric),
    Parameter("timeoutSeconds", float, lambda c: c.timeout),
    Parameter("retention", int, lambda c: c.retention),
    Parameter("finalize", bool, lambda c: c.schedule is not None),
    Parameter("finalize_topK", int, lambda c: _schedule(c).top_k),
    Parameter("finalize_seeds", int, lambda c: _schedule(c).seeds),
    Parameter("finalize_epochs", int, lambda c: _schedule(c).epochs),
    Parameter("finalize_lrSchedule", str, lambda c: _schedule(c).lr_schedule),
    Parameter("finalize_augment", str, lambda c: _schedule(c).augment),
    Parameter("finalize_ensemble", int, lambda c: _schedule(c).ensemble),
    Parameter("gates_minAccuracy", float, lambda c: _unset(c.gates.min_accuracy), True),
    Parameter("gates_maxLatencyMs", float, lambda c: _unset(c.gates.max_latency_ms), True),
    Parameter("gates_maxParameters", int, lambda c: _unset(c.gates.max_parameters), True),
    Parameter("gates_metrics", str, lambda c: c.gates.metrics),
    Parameter("compress", bool, lambda c: c.compress is not None),
    Parameter("compress_variants", str, lambda c: _plan(c).variants),
    Parameter("compress_maxAccuracyDrop", float, lambda c: _plan(c).max_accuracy_drop),
)
# Each step's outputs after ``told`` (what the steps before it and this one decided, as JSON),
# and what its stage does.
STEPS = {
    "search": (("experiment", "phase", "optimal_trial"),
               "Search: Katib (or the embedded engine) runs the Experiment to its end."),
    "finalize": (("final_run", "test_score"),
                 "Final training of the search's best trials; the final run is promoted."),
    "promote": (("decision", "champion_uri", "refused_by"),
                "Promotion through the gates against the champion on the same test split."),
    "compress": (("variants",), "Compression of the champion: the variants registered."),
}
# Not the config's: the manifest itself (the config names a file), and where the steps run.
RUN_PARAMETERS = (("experiment", "the Experiment manifest (YAML)"),
                  ("engine", f"where the search runs: {' or '.join(ENGINES)}"),
                  ("trackingUri", "MLflow's tracking URI (empty: MLFLOW_TRACKING_URI)"),
                  ("workdir", "the embedded engine's state (a path every step sees)"))


def defaults(config: PipelineConfig) -> dict[str, Any]:
    """The compiled pipeline's default parameters: ``config``'s effective settings."""
    out = {}
    for p in PARAMETERS:
        value = p.default(config)
        out[p.name] = int(value) if p.kind is int and not p.optional else value
    return out


def config_document(settings: dict[str, Any], manifest: str) -> dict[str, Any]:
    """The config file's document of a step's ``settings`` (``experiment``: the file the
    manifest was written to). ConfigError names the parameter."""
    known = {p.name: p for p in PARAMETERS}
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}")
    document: dict[str, Any] = {"experiment": manifest}
    off = []
    for name, value in settings.items():
        parameter = known[name]
        parsed = parameter.parse(value)
        if name in SWITCHES:
            off += [] if parsed else [name]
        elif parsed is not None and parsed != "":
            if len(parameter.path) == 1:
                document[name] = parsed
            else:
                section, key = parameter.path
                document.setdefault(section, {})[key] = parsed
    document.update({section: False for section in off})  # its fields do not matter then
    return document
