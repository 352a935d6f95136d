"""Katib's ``api.v1.beta1.EarlyStopping`` service for nasflow's early-stopping algorithms (asha).

Katib runs it as the early-stopping container of an experiment's Suggestion pod (port 6788) and
calls it when it creates trials:

* ``GetEarlyStoppingRules``: the request carries the experiment, its trials and the address of
  Katib's DB manager; each trial's objective curve is read from there (``GetObservationLog``, as
  Katib's own medianstop service does), and the rules are those the embedded engine attaches to a
  trial created with the same trials known (:mod:`pipeline.early_stopping`). Nothing is kept
  between calls, so a restarted service answers the same.
* ``SetTrialStatus``: the metrics collector stopped a trial by its rules; the Trial gets Katib's
  ``EarlyStopped`` condition (a status patch, retried on a conflict with Katib's controller).
* ``ValidateEarlyStoppingSettings``: the settings, checked as ``nasflow validate`` checks them;
  ``INVALID_ARGUMENT`` names the field.
"""

from __future__ import annotations

import datetime
import math
import time
from pathlib import Path
from typing import Any

import grpc

from pipeline.early_stopping import ALGORITHMS
from pipeline.early_stopping.base import Curve
from pipeline.service.api import api_pb2, api_pb2_grpc
from pipeline.service.convert import CONDITIONS, experiment_of
from pipeline.service.limits import Limits

PORT = 6788  # Katib's DefaultEarlyStoppingPort
MAX_TRIALS = 100_000  # trials one request may carry (each is one DB manager read)
DB_SECONDS = 10.0  # one observation-log read
COMPARISONS = {"less": api_pb2.LESS, "greater": api_pb2.GREATER, "equal": api_pb2.EQUAL}
NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def served() -> list[str]:
    """medianstop (in place of Katib's image, the same rule) and asha."""
    return list(ALGORITHMS)


def problems_of(spec: Any) -> list[str]:
    """``spec``: the request's EarlyStoppingSpec message."""
    from pipeline.validation.early_stopping import check_early_stopping

    if spec.algorithm_name not in served():
        return [f"earlyStopping.algorithmName: nasflow's early-stopping service serves "
                f"{', '.join(served())}, not {spec.algorithm_name!r}"]
    return [str(p) for p in check_early_stopping(spec)]


class EarlyStoppingService(api_pb2_grpc.EarlyStoppingServicer):
    def __init__(self, custom_objects: Any = None, namespace: str | None = None,
                 busy_limit: int = 3) -> None:
        """``custom_objects``: a kubernetes CustomObjectsApi (default: the pod's in-cluster one,
        made on first use). Requests are bounded as the Suggestion service's are
        (:class:`pipeline.service.limits.Limits`): a slow DB manager cannot hold every thread
        past its callers' deadlines."""
        self.limits = Limits(busy_limit)
        self._api = custom_objects
        self.namespace = namespace or (NAMESPACE_FILE.read_text().strip()
                                       if NAMESPACE_FILE.is_file() else "default")

    def ValidateEarlyStoppingSettings(self, request: Any, context: Any) -> Any:
        problems = problems_of(request.early_stopping)
        if problems:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        return api_pb2.ValidateEarlyStoppingSettingsReply()

    def GetEarlyStoppingRules(self, request: Any, context: Any) -> Any:
        spec = request.experiment.spec
        problems = problems_of(spec.early_stopping)
        if len(request.trials) > MAX_TRIALS:
            problems.append(f"trials: {len(request.trials)} is more than the {MAX_TRIALS:,} "
                            "one request may carry")
        if not request.db_manager_address:
            problems.append("db_manager_address: empty; the curves are read from Katib's DB "
                            "manager")
        if problems:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "; ".join(problems))
        experiment = experiment_of(request.experiment)
        objective = experiment.spec.objective.objective_metric_name
        settings = {s.name: s.value for s in spec.early_stopping.algorithm_settings}
        algorithm = ALGORITHMS[spec.early_stopping.algorithm_name](
            settings, objective, experiment.spec.objective.type == "maximize")
        with self.limits.request(context, "early-stopping") as left, \
                grpc.insecure_channel(request.db_manager_address) as channel:
            db = api_pb2_grpc.DBManagerStub(channel)
            try:  # each read within what is left of the caller's deadline
                curves = [Curve(t.name, CONDITIONS.get(t.status.condition, "Created"),
                                _values(db, t.name, objective, min(DB_SECONDS, left())))
                          for t in request.trials]
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    left()  # the caller's deadline passed: that is what it is told
                context.abort(grpc.StatusCode.UNAVAILABLE, f"Katib's DB manager at "
                              f"{request.db_manager_address} did not answer: {exc.code().name}")
        return api_pb2.GetEarlyStoppingRulesReply(early_stopping_rules=[
            api_pb2.EarlyStoppingRule(name=r.name, value=repr(r.value),
                                      comparison=COMPARISONS[r.comparison],
                                      start_step=r.start_step)
            for r in algorithm.rules(curves)])

    def SetTrialStatus(self, request: Any, context: Any) -> Any:
        from kubernetes.client.exceptions import ApiException
        from kubernetes.config import ConfigException

        for attempt in range(5):
            try:
                self._mark_early_stopped(request.trial_name)
                return api_pb2.SetTrialStatusReply()
            except ConfigException as exc:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no Kubernetes API to mark "
                              f"trial {request.trial_name!r} early-stopped: the service runs in "
                              f"Katib's Suggestion pod, with its service account ({exc})"[:500])
            except ApiException as exc:
                if exc.status == 409 and attempt < 4:  # Katib's controller changed it: again
                    time.sleep(0.2 * (attempt + 1))
                    continue
                code = grpc.StatusCode.NOT_FOUND if exc.status == 404 else \
                    grpc.StatusCode.INTERNAL
                context.abort(code, f"trial {request.trial_name!r} in namespace "
                              f"{self.namespace!r}: {exc.status} {exc.reason}")
        return api_pb2.SetTrialStatusReply()

    def _mark_early_stopped(self, name: str) -> None:
        api = self._custom_objects()
        trial = api.get_namespaced_custom_object("kubeflow.org", "v1beta1", self.namespace,
                                                 "trials", name)
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        conditions = [c for c in trial.get("status", {}).get("conditions", [])
                      if c.get("type") != "EarlyStopped"]
        conditions.append({"type": "EarlyStopped", "status": "True",
                           "reason": "TrialEarlyStopped", "message": "Trial is early stopped",
                           "lastUpdateTime": now, "lastTransitionTime": now})
        api.patch_namespaced_custom_object_status(
            "kubeflow.org", "v1beta1", self.namespace, "trials", name,
            {"metadata": {"resourceVersion": trial["metadata"].get("resourceVersion")},
             "status": {"conditions": conditions}})

    def _custom_objects(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            config.load_incluster_config()
            self._api = client.CustomObjectsApi()
        return self._api


def _values(db: Any, trial: str, metric: str, timeout: float) -> tuple[float, ...]:
    """The trial's values of ``metric`` in the order Katib's DB manager logged them."""
    reply = db.GetObservationLog(api_pb2.GetObservationLogRequest(
        trial_name=trial, metric_name=metric), timeout=timeout)
    out = []
    for log in reply.observation_log.metric_logs:
        try:
            value = float(log.metric.value)
        except ValueError:  # Katib's "unavailable"
            continue
        if math.isfinite(value):
            out.append(value)
    return tuple(out)


def add_to(server: Any, custom_objects: Any = None, namespace: str | None = None,
           busy_limit: int = 3) -> None:
    api_pb2_grpc.add_EarlyStoppingServicer_to_server(
        EarlyStoppingService(custom_objects, namespace, busy_limit), server)
