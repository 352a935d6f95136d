"""The model's life after its search, told once: final training -> promotion -> compression.

``nasflow run --finalize --promote --compress`` (the embedded engine, trials as local
processes), ``nasflow pipeline`` (the CronJob) and ``nasflow submit --promote`` (Katib, Jobs)
all tell it through :func:`tell`. What they share is decided here, the same everywhere:

1. **Final training** (:mod:`pipeline.finalize`) of the search's best trials when
   :attr:`Decisions.schedule` is set; the final run is what is promoted. Without a schedule the
   search's optimal trial itself is promoted.
2. **Promotion** (:mod:`pipeline.promotion`): registered, judged by the gates, compared with the
   champion on :attr:`Decisions.metric` (default: the objective, or the final run's test
   measure) in :attr:`Decisions.maximize`'s direction.
3. **Compression** (:mod:`pipeline.compression`) of whichever version is champion after the
   decision, each variant made once: a champion whose variants a failed or skipped run did not
   make gets them from the next.

Only where the work runs differs: a :class:`Workplace`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pipeline.compression import CompressionPlan, compress_model, run_locally, run_on_cluster
from pipeline.finalize import FinalResult, finalize, finalize_on_katib
from pipeline.finalize.plan import Schedule
from pipeline.promotion.gates import Gates
from pipeline.promotion.optimal_trial import OptimalTrial
from pipeline.promotion.registry import Decision, Registry


@dataclass(frozen=True)
class Decisions:
    """How a run of the story decides: the same fields for every command."""

    model: str  # the registered model
    schedule: Schedule | None = field(default_factory=Schedule)  # None: no final training
    promote: bool = True  # False: stop after final training
    min_improvement: float = 0.0
    metric: str | None = None  # compare on this run metric instead of the objective
    maximize: bool | None = None  # with ``metric``: its direction (None: higher is better)
    gates: Gates = field(default_factory=Gates)
    compress: CompressionPlan | None = None  # None: no compression
    distillation: Sequence[str] = ()  # extra flags of the distilled variant


class Workplace(Protocol):
    """Where a finished search is, and where its final training and compression run."""

    experiment: str
    namespace: str

    def optimal(self) -> OptimalTrial:
        """The search's own optimal trial."""

    def finalize(self, schedule: Schedule, model: str, budget: Gates) -> FinalResult:
        """Final training of the search's best trials (an ensemble within ``budget``)."""

    def compress(self, flags: list[str], source_run: Any) -> None:
        """``python -m trial_image compress FLAGS`` where training runs."""


@dataclass
class Outcome:
    final: FinalResult | None = None
    promoted: OptimalTrial | None = None  # what was registered: the final run or the trial
    decision: Decision | None = None
    variants: list[Any] | None = None  # None: compression off or no champion

    def to_dict(self) -> dict[str, Any]:
        return {"final": self.final.to_dict() if self.final else None,
                "promotion": self.decision.to_dict() if self.decision else None,
                "compression": None if self.variants is None
                else [v.to_dict() for v in self.variants]}

    @classmethod
    def from_dict(cls, told: dict[str, Any]) -> Outcome:
        """What the stages before decided (a Kubeflow Pipelines step is given it as JSON)."""
        return cls(final=FinalResult(**told["final"]) if told.get("final") else None,
                   decision=Decision(**told["promotion"]) if told.get("promotion") else None)


@dataclass(frozen=True)
class Story:
    """What every stage is told with."""

    place: Workplace
    decisions: Decisions
    registry: Registry
    log: Callable[[str], None]
    retry_seconds: float


def _final_training(story: Story, outcome: Outcome) -> None:
    if story.decisions.schedule is not None:
        gates = story.decisions.gates  # the ensemble's budget: latency and size, not the test
        outcome.final = story.place.finalize(story.decisions.schedule, story.decisions.model,
                                             Gates(max_latency_ms=gates.max_latency_ms,
                                                   max_parameters=gates.max_parameters))


def _promotion(story: Story, outcome: Outcome) -> None:
    decisions, place = story.decisions, story.place
    if not decisions.promote:
        return
    outcome.promoted = (story.registry.final_trial(place.experiment, place.namespace,
                                                   outcome.final.final_run)
                        if outcome.final else place.optimal())
    outcome.decision = story.registry.promote(
        outcome.promoted, decisions.min_improvement, metric=decisions.metric,
        maximize=decisions.maximize, gates=decisions.gates)


def _compression(story: Story, outcome: Outcome) -> None:
    decisions = story.decisions
    if decisions.compress is not None and outcome.decision and outcome.decision.champion:
        outcome.variants = compress_model(
            story.registry, f"models:/{decisions.model}@champion", decisions.compress,
            story.place.compress, story.log, story.retry_seconds, decisions.distillation)


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[[Story, Outcome], None]  # fills its part of the outcome


# The order of the story, here and nowhere else (the Kubeflow pipeline's steps follow it).
STAGES = (Stage("finalize", _final_training), Stage("promote", _promotion),
          Stage("compress", _compression))


def preflight(decisions: Decisions, tracking_uri: str, retry_seconds: float) -> None:
    """Before the search: refused in one line where promotion or compression could not
    register what the story makes (TrackingError)."""
    if decisions.promote:
        from pipeline.promotion.access import preflight as check
        from pipeline.promotion.registry import variants_of

        check(Registry(tracking_uri, decisions.model, retry_seconds),
              [decisions.model, *([variants_of(decisions.model)]
                 if decisions.compress is not None else [])])


def tell(place: Workplace, decisions: Decisions, tracking_uri: str,
         log: Callable[[str], None], retry_seconds: float, outcome: Outcome | None = None,
         only: str | None = None) -> Outcome:
    """Final training, promotion and compression of ``place``'s search, as ``decisions`` say;
    ``only``: that stage alone, after those before it decided ``outcome``."""
    outcome = outcome or Outcome()
    story = Story(place, decisions, Registry(tracking_uri, decisions.model, retry_seconds), log,
                  retry_seconds)
    for stage in STAGES:
        if only in (None, stage.name):
            stage.run(story, outcome)
    return outcome


@dataclass
class LocalPlace:
    """A search of the embedded engine (``<workdir>/<experiment>``); final training and
    compression as local processes (the search's warm workers, if it hands them over)."""

    experiment: str
    workdir: Path
    template: Any  # the trial template final runs are made from
    tracking_uri: str
    log: Callable[[str], None]
    retry_seconds: float
    pool: Any = None
    namespace: str = "default"

    def optimal(self) -> OptimalTrial:
        from pipeline.promotion.optimal_trial import from_engine_state

        return from_engine_state(self.workdir, self.experiment)

    def search(self) -> Any:
        """The finished search's trials (:class:`pipeline.finalize.candidates.Search`)."""
        from pipeline.finalize.candidates import from_state

        return from_state(self.workdir, self.experiment)

    def finalize(self, schedule: Schedule, model: str, budget: Gates) -> FinalResult:
        from pipeline.finalize.runners import LocalRunner

        search = self.search()
        runner = LocalRunner(self.template, search.namespace, self.workdir, self.tracking_uri,
                             parallel=search.experiment.spec.parallel_trial_count or 3,
                             pool=self.pool, log=self.log)
        return finalize(search, runner, self.tracking_uri, model, schedule, self.log,
                        self.retry_seconds, budget)

    def compress(self, flags: list[str], source_run: Any) -> None:
        run_locally(flags, self.tracking_uri, self.log, self.workdir / "compress.log")


@dataclass
class KatibPlace:
    """An experiment Katib ran; final training and compression as Jobs (or TrainJobs) of its
    trial template, each followed for up to ``timeout`` s."""

    client: Any  # pipeline.cluster.client.KatibClient
    experiment: str
    tracking_uri: str
    timeout: float
    image: str | None  # replaces the template's trial image
    log: Callable[[str], None]
    retry_seconds: float

    @property
    def namespace(self) -> str:
        return self.client.namespace

    def optimal(self) -> OptimalTrial:
        from pipeline.promotion.optimal_trial import from_katib

        return from_katib(self.client.get_experiment(self.experiment))

    def finalize(self, schedule: Schedule, model: str, budget: Gates) -> FinalResult:
        return finalize_on_katib(self.client, self.experiment, self.tracking_uri, model,
                                 schedule, self.timeout, self.image, self.log,
                                 self.retry_seconds, budget)

    def compress(self, flags: list[str], source_run: Any) -> None:
        run_on_cluster(self.client, self.experiment, flags, self.timeout, self.image, self.log)
