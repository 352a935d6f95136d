"""Champion/challenger in the MLflow model registry, with aliases (stages are deprecated).

Registering the optimal trial's model is idempotent: a run already registered under the model is
reused, never registered twice. Deciding is a convergence loop rather than a lock, because the
registry has no transactions: every promoter, after registering its version, repeatedly reads all
comparable versions and the ``champion`` alias and moves the alias to the best version (when it
beats the champion by ``min_improvement``) until a read finds nothing to change. Whichever promoter
writes last reads again afterwards, and that read sees every version registered before it, so
concurrent pipelines always end with the best version as champion, never a stale one.
"""

from __future__ import annotations

import contextlib
import copy
import io
import time
from dataclasses import dataclass
from typing import Any

from pipeline.katib.status import now_rfc3339
from pipeline.promotion.access import readable
from pipeline.promotion.gates import Gates
from pipeline.promotion.optimal_trial import OptimalTrial
from trial_image.contract import (
    fail_fast_http,
    racing,
    retry,
    tags,
    task_of,
    version_or_none,
)

CHAMPION, CHALLENGER = "champion", "challenger"
TAG = "nasflow."
METRIC, GOAL, VALUE = f"{TAG}objective.metric", f"{TAG}objective.type", f"{TAG}objective.value"
DECISION, PREVIOUS, ROLLED_BACK = f"{TAG}decision", f"{TAG}previous_champion", f"{TAG}rolled_back"
GATES, REASON = f"{TAG}gates", f"{TAG}reason"
MAX_ROUNDS = 50
NO_GATES = Gates()


class PromotionError(Exception):
    """Promotion cannot proceed (message says why and what to do)."""


@dataclass(frozen=True)
class Decision:
    model: str
    version: str
    decision: str  # "champion" | "challenger"
    champion: str  # the version holding the champion alias afterwards
    previous_champion: str | None
    score: float
    champion_score: float | None
    created: bool  # False: the run was registered already (idempotent re-run)
    reason: str = ""  # why not champion: a failed gate, or not better than the champion
    same_data: bool = False  # the champion's score was measured on this model's test split
    # the version compared with was tested on other test data (its test digest differs)
    other_test_data: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _other_test_data(version: Any, compared: Any | None) -> str | None:
    """The compared version's number when both carry a test digest and the digests differ."""
    if compared is None:
        return None
    ours, theirs = version.tags.get(tags.TEST_DIGEST), compared.tags.get(tags.TEST_DIGEST)
    return compared.version if ours and theirs and ours != theirs else None


VARIANTS_TAG = "nasflow.variants"


def variants_of(model: str) -> str:
    """The registered model of ``model``'s compressed variants."""
    return f"{model}-variants"


class Registry:
    """Waits up to ``retry_seconds`` for an unreachable server (then TrackingError: one line,
    exit 4), so a promotion never hangs for minutes on MLflow's own HTTP retries."""

    def __init__(self, tracking_uri: str, model: str, retry_seconds: float = 20.0) -> None:
        import mlflow
        from mlflow import MlflowClient

        self.uri = tracking_uri
        self.model = model
        self.mlflow = mlflow
        self.retry_seconds = retry_seconds
        fail_fast_http()
        self.client = retry(lambda: MlflowClient(tracking_uri, registry_uri=tracking_uri),
                            f"opening MLflow at {tracking_uri}", 0)
        retry(lambda: self.client.search_experiments(max_results=1),
              f"connecting to MLflow at {tracking_uri}", retry_seconds)

    # ---- finding the trial's run -------------------------------------------------------------

    def finished_runs(self, query: str, order_by: str = "attributes.end_time DESC",
                      max_results: int = 5000) -> list[Any]:
        """The FINISHED runs matching ``query`` in every MLflow experiment (a trial template
        may log a Katib experiment's runs under any MLflow experiment name)."""
        experiments = [e.experiment_id for e in self.client.search_experiments()]
        if not experiments:
            return []
        return self.client.search_runs(experiments, f"{query} and attributes.status = "
                                       "'FINISHED'", order_by=[order_by],
                                       max_results=max_results)

    def find_run(self, optimal: OptimalTrial) -> Any:
        """The FINISHED MLflow run the trial image logged for ``optimal`` (newest if several)."""
        runs = [r for r in self.finished_runs(
                    f"tags.`katib.experiment` = '{optimal.experiment}' and "
                    f"tags.`katib.trial` = '{optimal.trial}'", max_results=5)
                if r.data.tags.get(tags.NAMESPACE, optimal.namespace) == optimal.namespace]
        if not runs:
            readable(self, optimal.experiment)
            raise PromotionError(
                f"no finished MLflow run for trial {optimal.trial!r} of experiment "
                f"{optimal.experiment!r} at {self.uri}: the trials must log to this tracking "
                "server (MLFLOW_TRACKING_URI in the trial template, ConfigMap nasflow-config)")
        return runs[0]

    def runs_of(self, experiment: str, namespace: str) -> list[Any]:
        """Every FINISHED run of ``experiment``'s trials and final models in ``namespace``."""
        return [r for r in self.finished_runs(f"tags.`katib.experiment` = '{experiment}'")
                if r.data.tags.get(tags.NAMESPACE, namespace) == namespace
                and r.data.tags.get(tags.ROLE, "trial") in ("trial", "final")]

    def final_trial(self, experiment: str, namespace: str, run_id: str | None = None
                    ) -> OptimalTrial | None:
        """A final model of ``experiment`` (``nasflow finalize``), as the trial to promote,
        compared on its task's test measure (Test-Accuracy, Test-RMSE): run ``run_id``, else
        the newest."""
        if run_id is not None:
            run = self.client.get_run(run_id)
        else:
            runs = self.finished_runs(f"tags.`katib.experiment` = '{experiment}' and "
                                      "tags.`nasflow.role` = 'final'", max_results=1)
            if not runs:
                return None
            run = runs[0]
        logged = run.data.tags
        task = task_of(logged.get(tags.TASK))
        return OptimalTrial(experiment, logged.get(tags.NAMESPACE, namespace),
                            logged[tags.TRIAL], task.test_metric, task.maximize,
                            run.data.metrics.get(task.test_metric),
                            logged.get(tags.ALGORITHM, ""),
                            {"source_trial": logged.get(tags.SOURCE_TRIAL, "")})

    # ---- registering -------------------------------------------------------------------------

    def _new_version(self, run: Any, version_tags: dict[str, str]) -> Any:
        """A new version of ``run``'s model; MLflow's own lines about it ("Registered model …
        already exists", "Created version …") stay off the user's terminal."""
        self.mlflow.set_tracking_uri(self.uri)
        self.mlflow.set_registry_uri(self.uri)
        with contextlib.redirect_stderr(io.StringIO()):
            return racing(lambda: self.mlflow.register_model(
                self._model_uri(run), self.model, tags=version_tags))

    def variants(self) -> Registry:
        """The registered model holding this model's compressed variants, each under its own
        alias (``models:/<model>-variants@int8-full``). This model's versions are its final
        models alone, so its page leads with the champion and its challengers; the variants
        are one alias away, and the model carries the tag ``nasflow.variants`` naming them."""
        other = copy.copy(self)
        other.model = variants_of(self.model)
        racing(lambda: self.client.set_registered_model_tag(self.model, VARIANTS_TAG,
                                                             other.model))
        return other

    def register_variant(self, run: Any, variant: str) -> Any:
        """A compressed variant's run as a version of this (variants) model with tag
        ``nasflow.variant`` and alias ``<variant>`` (created once)."""
        existing = self._versions_of_run(run.info.run_id)
        if existing:
            return existing[0]
        measure = task_of(run.data.tags.get(tags.TASK)).test_metric
        version = self._new_version(run, {
            tags.VARIANT: variant, tags.SOURCE_MODEL: run.data.tags.get(tags.SOURCE_MODEL, ""),
            VALUE: repr(run.data.metrics[measure]), METRIC: measure})
        self._alias(variant, version.version)
        return version

    def register(self, optimal: OptimalTrial, run: Any, metric: str, maximize: bool,
                 score: float) -> tuple[Any, bool]:
        """The model version of ``run`` (created with its tags unless it exists already)."""
        existing = self._versions_of_run(run.info.run_id)
        if existing:
            return existing[0], False
        version_tags = {
            f"{TAG}experiment": optimal.experiment, f"{TAG}namespace": optimal.namespace,
            f"{TAG}trial": optimal.trial, f"{TAG}algorithm": optimal.algorithm,
            METRIC: metric, GOAL: "maximize" if maximize else "minimize", VALUE: repr(score),
            f"{TAG}dataset": run.data.tags.get(tags.DATASET, ""),
            f"{TAG}architecture": run.data.tags.get(tags.CANDIDATE_ID, ""),
            f"{TAG}frontend": run.data.tags.get(tags.FRONTEND, ""),
            **{key: run.data.tags[key] for key in (tags.DATA_DIGEST, tags.TEST_DIGEST)
               if key in run.data.tags},
        }
        version = self._new_version(run, version_tags)
        assignments = "\n".join(f"- `{k}` = `{v[:300]}`" for k, v in optimal.assignments.items())
        self.client.update_model_version(
            self.model, version.version,
            description=(f"Optimal trial `{optimal.trial}` of experiment `{optimal.experiment}` "
                         f"({optimal.algorithm}): {metric} = {score:.6g}.\n\n{assignments}"))
        # Two promoters of the same run can both get past the check above: keep the oldest.
        duplicates = self._versions_of_run(run.info.run_id)
        if duplicates and duplicates[0].version != version.version:
            self.client.delete_model_version(self.model, version.version)
            return duplicates[0], False
        return version, True

    def _alias(self, alias: str, version: str) -> None:
        racing(lambda: self.client.set_registered_model_alias(self.model, alias, version))

    def _tag(self, version: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            racing(lambda k=key, v=value: self.client.set_model_version_tag(
                self.model, version, k, v))

    def _versions_of_run(self, run_id: str) -> list[Any]:
        versions = self.client.search_model_versions(f"name = '{self.model}' and "
                                                     f"run_id = '{run_id}'")
        return sorted(versions, key=lambda v: int(v.version))

    # ---- deciding ----------------------------------------------------------------------------

    def _score(self, version: Any, metric: str) -> float | None:
        if version.tags.get(METRIC) == metric:
            return float(version.tags[VALUE])
        if version.run_id:  # a version registered by hand: compare on its run's metric
            return self.client.get_run(version.run_id).data.metrics.get(metric)
        return None

    def _champion(self) -> Any | None:
        return version_or_none(self.client, self.model, CHAMPION)

    def _model_uri(self, run: Any) -> str:
        """The model the trial stored (MLflow 3 logs it as a model of its own, ``model``)."""
        found = self.client.search_logged_models(
            [run.info.experiment_id],
            filter_string=f"source_run_id = '{run.info.run_id}' AND name = 'model'",
            max_results=1)
        return f"models:/{found[0].model_id}" if found else f"runs:/{run.info.run_id}/model"

    def _comparable(self, metric: str, goal: str) -> list[Any]:
        """Versions that may be champion: same metric and direction, gates passed, not rolled
        back."""
        versions = self.client.search_model_versions(f"name = '{self.model}'")
        return [v for v in versions if v.tags.get(METRIC) == metric and v.tags.get(GOAL) == goal
                and v.tags.get(ROLLED_BACK) != "true" and v.tags.get(GATES) != "failed"]

    def _crown(self, version: str, champion: Any | None) -> str | None:
        self._alias(CHAMPION, version)
        previous = champion.version if champion is not None else None
        self._tag(version, {DECISION: CHAMPION, f"{TAG}decided_at": now_rfc3339(),
                            **({PREVIOUS: previous} if previous else {})})
        return previous

    def decide(self, version: Any, metric: str, maximize: bool, min_improvement: float,
               created: bool, same_data: tuple[str, float] | None = None) -> Decision:
        """``same_data``: (champion version, its score on ``version``'s test split). While that
        version is still champion the two are compared on that score alone: a fair comparison,
        and final (scores measured on older data do not take part)."""
        goal = "maximize" if maximize else "minimize"
        sign = 1.0 if maximize else -1.0
        score = float(version.tags[VALUE])
        gated = version.tags.get(GATES) == "failed"
        previous, fair = None, False
        for _ in range(MAX_ROUNDS):
            champion = self._champion()
            if same_data and champion is not None and champion.version == same_data[0]:
                fair = True
                if not gated and champion.version != version.version and \
                        sign * (score - same_data[1]) >= min_improvement:
                    previous = self._crown(version.version, champion)
                break
            versions = self._comparable(metric, goal)
            if not versions:
                if gated:  # nothing may be champion through this promotion
                    break
                time.sleep(0.2)  # our own version is not visible yet (eventual consistency)
                continue
            # best: highest signed score, the oldest version on a tie
            best = max(versions, key=lambda v: (sign * float(v.tags[VALUE]), -int(v.version)))
            best_score = float(best.tags[VALUE])
            if champion is not None and champion.version == best.version:
                break
            champion_score = self._score(champion, metric) if champion is not None else None
            if champion is not None and (champion_score is None or
                                         sign * (best_score - champion_score) < min_improvement):
                break
            previous = self._crown(best.version, champion)
        else:
            raise PromotionError(f"the champion of {self.model!r} kept changing for "
                                 f"{MAX_ROUNDS} rounds; run `nasflow promote` again")
        champion = self._champion()
        champion_score = same_data[1] if fair else (
            self._score(champion, metric) if champion is not None else None)
        ours = champion is not None and champion.version == version.version
        reason = ""
        if not ours:
            reason = version.tags.get(REASON) if gated else (
                f"not better than champion version {champion.version} by {min_improvement:g}"
                + (" on the same test split" if fair else "") if champion else "")
        if not ours and created:
            self._alias(CHALLENGER, version.version)
            self._tag(version.version, {DECISION: CHALLENGER, f"{TAG}decided_at": now_rfc3339(),
                                        f"{TAG}champion_at_decision":
                                            champion.version if champion else "",
                                        **({} if gated else {REASON: reason})})
        if ours and previous is None:
            previous = (self.client.get_model_version(self.model, version.version)
                        .tags.get(PREVIOUS))
        compared = (self.client.get_model_version(self.model, previous) if ours and previous
                    else None if ours else champion)
        return Decision(self.model, version.version, CHAMPION if ours else CHALLENGER,
                        champion.version if champion else "", previous, score,
                        champion_score, created, reason or "", fair,
                        None if fair else _other_test_data(version, compared))

    def promote(self, optimal: OptimalTrial, min_improvement: float = 0.0,
                metric: str | None = None, maximize: bool | None = None,
                gates: Gates = NO_GATES) -> Decision:
        """Register ``optimal``'s model and move the aliases; ``metric`` overrides the objective
        (a run metric such as Test-Accuracy, e.g. for a DARTS genotype objective). A model that
        fails a gate is registered as challenger. When the run measured the champion on its own
        test split (``nasflow finalize``), the two are compared on that split."""
        run = self.find_run(optimal)
        if metric is None or metric == optimal.metric:
            metric, maximize, score = optimal.metric, optimal.maximize, optimal.value
        else:
            score = run.data.metrics.get(metric)
            maximize = True if maximize is None else maximize
        if score is None:
            raise PromotionError(f"the objective {metric!r} of trial {optimal.trial!r} is not a "
                                 "number; compare on a run metric instead, e.g. "
                                 "--metric Test-Accuracy")
        version, created = self.register(optimal, run, metric, maximize, score)
        failures = gates.failures(run.data.metrics)
        if created:
            self._tag(version.version, {GATES: "failed" if failures else "passed",
                                        **({REASON: "; ".join(failures)} if failures else {})})
        return self.decide(self.client.get_model_version(self.model, version.version), metric,
                           maximize, min_improvement, created, self._same_data(run, metric))

    def _same_data(self, run: Any, metric: str) -> tuple[str, float] | None:
        """(version, score) of the registered model the run measured on its own test split."""
        measured = run.data.metrics.get(f"Champion-{metric}")
        model, _, number = run.data.tags.get(f"{TAG}compared_with", "").removeprefix(
            "models:/").rpartition("/")
        if measured is None or model != self.model or not number.isdigit():
            return None
        return number, measured

    def rollback(self) -> dict[str, Any]:
        """Give ``champion`` back to the version it replaced; the replaced one is excluded from
        later promotions (tag ``nasflow.rolled_back``)."""
        champion = self._champion()
        if champion is None:
            raise PromotionError(f"model {self.model!r} has no champion to roll back")
        previous = champion.tags.get(PREVIOUS)
        if not previous:
            raise PromotionError(f"version {champion.version} of {self.model!r} replaced no "
                                 "earlier champion; nothing to roll back to")
        self._alias(CHAMPION, previous)
        self._tag(champion.version, {ROLLED_BACK: "true", DECISION: "rolled-back"})
        self._tag(previous, {f"{TAG}restored_at": now_rfc3339()})
        return {"model": self.model, "champion": previous, "rolled_back": champion.version}
