"""Katib's Experiments, Trials and Suggestions through the official ``kubernetes`` client.

Objects come back as ``kubeflow-katib-api`` models (Katib's own types). Waiting uses a watch from
the last seen ``resourceVersion`` and reconnects when the server closes it, the connection drops,
or the version expired (410), until the Experiment succeeds or fails or the timeout passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

from kubeflow_katib_api.models import V1beta1Experiment, V1beta1Suggestion, V1beta1Trial

from pipeline.cluster.errors import ClusterError, explain
from pipeline.katib.manifest import EXPERIMENT_LABEL
from pipeline.katib.status import ENDED
from trial_image.contract import SERVICE_ACCOUNT_NAMESPACE

GROUP, VERSION = "kubeflow.org", "v1beta1"
TRAINER = ("trainer.kubeflow.org", "v1alpha1")  # Kubeflow Trainer's TrainJobs
WATCH_CHUNK_SECONDS = 300  # one watch request; the API server closes longer ones anyway


class Workload(NamedTuple):
    """A kind the pipeline creates itself (final training, compression): Job or TrainJob."""

    what: str  # as kubectl names it
    create: Callable[[dict[str, Any]], Any]
    read: Callable[[str], Any]
    list: Callable[..., Any]
    list_args: tuple


def current_condition(obj: V1beta1Experiment | V1beta1Trial | V1beta1Suggestion) -> Any | None:
    """The newest condition whose status is True (Katib's convention), or None."""
    conditions = (obj.status and obj.status.conditions) or []
    current = [c for c in conditions if c.status == "True"]
    return current[-1] if current else None


def condition(obj: V1beta1Experiment | V1beta1Trial | V1beta1Suggestion) -> str:
    """The current phase: the type of :func:`current_condition`, else Pending."""
    current = current_condition(obj)
    return current.type if current else "Pending"


def finished(experiment: V1beta1Experiment) -> bool:
    return condition(experiment) in ENDED


def _default_namespace(kubeconfig: str | None, context: str | None) -> str:
    if SERVICE_ACCOUNT_NAMESPACE.exists():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    from kubernetes import config

    try:
        contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
        if context:
            active = next(c for c in contexts if c["name"] == context)
        return active["context"].get("namespace") or "default"
    except (config.ConfigException, StopIteration, KeyError, TypeError):
        return "default"


KATIB_CONFIG = ("kubeflow", "katib-config")  # Katib's ConfigMap: namespace, name


class KatibClient:
    """Create, read, watch and delete Katib objects in one namespace.

    ``api`` is a ``CustomObjectsApi``; by default one is built from the in-cluster service
    account, else from the kubeconfig (``kubeconfig``/``context`` pick file and context).
    """

    def __init__(self, namespace: str | None = None, kubeconfig: str | None = None,
                 context: str | None = None, api: Any = None) -> None:
        from kubernetes import client, config

        if api is None:
            try:
                if kubeconfig or context:
                    raise config.ConfigException("a kubeconfig was asked for")
                config.load_incluster_config()
            except config.ConfigException:
                try:
                    config.load_kube_config(config_file=kubeconfig, context=context)
                except (config.ConfigException, OSError) as exc:
                    raise ClusterError(f"no cluster configured: {exc} (set KUBECONFIG or "
                                       "--kubeconfig)") from None
            api = client.CustomObjectsApi()
        self.api = api
        self.namespace = namespace or _default_namespace(kubeconfig, context)

    def _call(self, action: str, what: str, fn: Callable[..., Any], *args: Any,
              **kwargs: Any) -> Any:
        try:
            return fn(GROUP, VERSION, self.namespace, *args, **kwargs)
        except ClusterError:
            raise
        except Exception as exc:  # noqa: BLE001 - every API/connection failure gets one line
            raise explain(exc, action, what, self.namespace) from None

    # ---- Experiments -------------------------------------------------------------------------

    def create_experiment(self, body: dict[str, Any]) -> V1beta1Experiment:
        name = body["metadata"]["name"]
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        created = self._call("create", f"experiment {name!r}",
                             self.api.create_namespaced_custom_object, "experiments", body)
        return V1beta1Experiment.from_dict(created)

    def get_experiment(self, name: str) -> V1beta1Experiment:
        raw = self._call("get", f"experiment {name!r}", self.api.get_namespaced_custom_object,
                         "experiments", name)
        return V1beta1Experiment.from_dict(raw)

    def list_experiments(self, label_selector: str | None = None) -> list[V1beta1Experiment]:
        kwargs = {"label_selector": label_selector} if label_selector else {}
        raw = self._call("list", "experiments", self.api.list_namespaced_custom_object,
                         "experiments", **kwargs)
        return [V1beta1Experiment.from_dict(item) for item in raw.get("items", [])]

    def delete_experiment(self, name: str) -> None:
        # Foreground: the Trials, their Jobs and the Suggestion go before the Experiment does.
        self._call("delete", f"experiment {name!r}", self.api.delete_namespaced_custom_object,
                   "experiments", name, body={"propagationPolicy": "Foreground"})

    # ---- Trials and Suggestions --------------------------------------------------------------

    def list_trials(self, experiment: str) -> list[V1beta1Trial]:
        raw = self._call("list", f"trials of experiment {experiment!r}",
                         self.api.list_namespaced_custom_object, "trials",
                         label_selector=f"{EXPERIMENT_LABEL}={experiment}")
        trials = [V1beta1Trial.from_dict(item) for item in raw.get("items", [])]
        return sorted(trials, key=lambda t: (t.metadata.creation_timestamp or 0, t.metadata.name))

    def get_suggestion(self, name: str) -> V1beta1Suggestion:
        raw = self._call("get", f"suggestion {name!r}", self.api.get_namespaced_custom_object,
                         "suggestions", name)
        return V1beta1Suggestion.from_dict(raw)

    # ---- Katib's configuration ----------------------------------------------------------------

    def katib_algorithms(self) -> set[str] | None:
        """The ``algorithmName``s the cluster's katib-config gives a suggestion or an
        early-stopping image (Katib's own and any registered service, such as nasflow's:
        ``manifests/suggestion``); None when it cannot be read (no permission, Katib installed
        elsewhere)."""
        import json

        import yaml
        from kubernetes import client

        try:
            raw = client.CoreV1Api(self.api.api_client).read_namespaced_config_map(
                KATIB_CONFIG[1], KATIB_CONFIG[0], _preload_content=False)
            config = yaml.safe_load(json.loads(raw.data)["data"]["katib-config.yaml"])
            runtime = config["runtime"]
            return {s["algorithmName"] for s in (*runtime["suggestions"],
                                                 *runtime.get("earlyStoppings", []))}
        except Exception:  # noqa: BLE001 - unreadable: the caller says what to do instead
            return None

    # ---- Jobs and TrainJobs (final training, compression) --------------------------------------

    def _batch(self) -> Any:
        from kubernetes import client

        return client.BatchV1Api(self.api.api_client)

    def _workload(self, kind: str) -> Workload:
        """How the API creates, reads and lists a Job, or a TrainJob."""
        if kind == "TrainJob":
            api, where = self.api, (*TRAINER, self.namespace, "trainjobs")
            return Workload(
                "trainjob",
                lambda body: api.create_namespaced_custom_object(*where, body,
                                                                 _preload_content=False),
                lambda name: api.get_namespaced_custom_object(*where, name,
                                                              _preload_content=False),
                api.list_namespaced_custom_object, where)
        batch = self._batch()
        return Workload(
            "job",
            lambda body: batch.create_namespaced_job(self.namespace, body,
                                                     _preload_content=False),
            lambda name: batch.read_namespaced_job(name, self.namespace, _preload_content=False),
            batch.list_namespaced_job, (self.namespace,))

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create a Job, or a TrainJob (``body``'s kind)."""
        name = body["metadata"]["name"]
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        workload = self._workload(body.get("kind", "Job"))
        return self._call_raw("create", f"{workload.what} {name!r}",
                              lambda: workload.create(body))

    def get_job(self, name: str, kind: str = "Job") -> dict[str, Any]:
        workload = self._workload(kind)
        return self._call_raw("get", f"{workload.what} {name!r}", lambda: workload.read(name))

    def _call_raw(self, action: str, what: str, call: Callable[[], Any]) -> dict[str, Any]:
        import json

        try:
            return json.loads(call().data)
        except Exception as exc:  # noqa: BLE001 - every API/connection failure gets one line
            raise explain(exc, action, what, self.namespace) from None

    def wait_job(self, name: str, timeout: float, kind: str = "Job") -> dict[str, Any]:
        """Follow Job (or TrainJob) ``name`` until it is Complete or Failed; it as a dict."""
        what, _, _, list_fn, list_args = self._workload(kind)
        return self._follow(
            f"{what} {name!r}", lambda: self.get_job(name, kind), list_fn, list_args, name,
            lambda job: job,
            lambda job: any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                            for c in (job.get("status") or {}).get("conditions") or []),
            timeout, None, 1.0, lambda job: job["metadata"].get("resourceVersion"),
            lambda job: f"(still running); follow it with `kubectl -n {self.namespace} get "
                        f"{what} {name}`")

    # ---- waiting -----------------------------------------------------------------------------

    def wait(self, name: str, timeout: float,
             on_update: Callable[[V1beta1Experiment], None] | None = None,
             reconnect_delay: float = 1.0) -> V1beta1Experiment:
        """Follow ``name`` until it Succeeded or Failed; ClusterError after ``timeout`` s."""
        return self._follow(
            f"experiment {name!r}", lambda: self.get_experiment(name),
            self.api.list_namespaced_custom_object,
            (GROUP, VERSION, self.namespace, "experiments"), name,
            V1beta1Experiment.from_dict, finished, timeout, on_update, reconnect_delay,
            lambda e: e.metadata.resource_version,
            lambda e: f"(still {condition(e)}); follow it with `nasflow status {name} --watch`")

    def _follow(self, what: str, read: Callable[[], Any], list_fn: Callable[..., Any],
                list_args: tuple, name: str, parse: Callable[[Any], Any],
                done: Callable[[Any], bool], timeout: float,
                on_update: Callable[[Any], None] | None, reconnect_delay: float,
                version_of: Callable[[Any], str | None], advice: Callable[[Any], str]) -> Any:
        """A watch from the last seen ``resourceVersion`` that reconnects when the server closes
        it, the connection drops, or the version expired (410), until ``done``."""
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        deadline = time.monotonic() + timeout
        current = read()
        version = version_of(current)
        while True:
            if on_update:
                on_update(current)
            if done(current):
                return current
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClusterError(f"timed out after {timeout:.0f} s waiting for {what} "
                                   f"{advice(current)}")
            stream = watch.Watch()
            try:
                for event in stream.stream(
                        list_fn, *list_args, field_selector=f"metadata.name={name}",
                        resource_version=version,
                        timeout_seconds=max(1, int(min(remaining, WATCH_CHUNK_SECONDS)))):
                    if event["type"] == "DELETED":
                        raise ClusterError(f"{what} was deleted while waiting")
                    if event["type"] in ("ADDED", "MODIFIED"):
                        raw = event["raw_object"] if "raw_object" in event else event["object"]
                        current = parse(raw)
                        version = version_of(current)
                        break  # report it, check for the end, then watch on from `version`
                else:
                    version = stream.resource_version or version  # server closed: reconnect
            except ApiException as exc:
                if exc.status != 410:
                    raise explain(exc, "watch", what, self.namespace) from None
                # Our resourceVersion expired: read the object again and watch from there.
                current = read()
                version = version_of(current)
            except (HTTPError, OSError):
                time.sleep(reconnect_delay)  # connection dropped: reconnect from `version`
            finally:
                stream.stop()
