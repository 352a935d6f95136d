"""What each engine can run of a valid manifest, and the settings the embedded engine ignores."""

from __future__ import annotations

from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.suggestion.registry import algorithms

LOCAL_KINDS = {("Job", "batch/v1"), ("TrainJob", "trainer.kubeflow.org/v1alpha1")}
LOCAL_MAX_NODES = 16  # local workers of one trial: more is a cluster's job


def engine_support(experiment: V1beta1Experiment) -> list[str]:
    """Why the embedded engine cannot run a valid manifest (empty = it can)."""
    spec = experiment.spec
    template = spec.trial_template
    reasons = []
    if template.config_map is not None:
        reasons.append("trial template from a ConfigMap (needs the cluster's ConfigMap)")
    trial_spec = template.trial_spec or {}
    kind = trial_spec.get("kind")
    if template.trial_spec is not None and (kind, trial_spec.get("apiVersion")) not in LOCAL_KINDS:
        reasons.append(f"trial kind {kind} (the embedded engine runs a batch/v1 Job's primary "
                       "container or a Kubeflow Trainer TrainJob's trainer)")
    elif kind == "TrainJob":
        trainer = (trial_spec.get("spec") or {}).get("trainer") or {}
        if not trainer.get("command"):
            reasons.append("a TrainJob whose trainer has no command (the runtime's command is "
                           "unknown to the embedded engine)")
        if (trainer.get("numNodes") or 1) > LOCAL_MAX_NODES:
            reasons.append(f"a TrainJob of {trainer['numNodes']} nodes (the embedded engine "
                           f"starts at most {LOCAL_MAX_NODES} local workers per trial)")
    collector = (spec.metrics_collector_spec.collector.kind
                 if spec.metrics_collector_spec and spec.metrics_collector_spec.collector
                 else "StdOut") or "StdOut"
    if collector not in ("StdOut", "File"):
        reasons.append(f"metrics collector {collector} (StdOut and File are supported)")
    declared = algorithms()[spec.algorithm.algorithm_name]
    if declared.suggestion is None:
        reasons.append(declared.local_limit)
    return reasons


def ignored_settings(experiment: V1beta1Experiment) -> list[str]:
    """Settings of a valid manifest that the embedded engine accepts for Katib and ignores."""
    algorithm = experiment.spec.algorithm
    declared = algorithms()[algorithm.algorithm_name]
    ignored = declared.ignored({s.name: str(s.value) for s in algorithm.algorithm_settings or []})
    if not ignored:
        return []
    return [f"{algorithm.algorithm_name} setting(s) {', '.join(ignored)} (accepted for Katib, "
            f"ignored by nasflow run: {declared.ignored_note})"]


def cluster_support(experiment: V1beta1Experiment) -> list[str]:
    """Why Katib cannot run it (empty = it can)."""
    return katib_limits(experiment) + list(nasflow_services(experiment).values())


def katib_limits(experiment: V1beta1Experiment) -> list[str]:
    """What keeps Katib v0.19 from finishing a valid manifest, whatever its katib-config
    (measured on the development cluster, docs/katib.md §7): with early stopping and
    ``retain: false`` Katib deletes a stopped trial's Job in the reconcile that marks it
    complete, before it reads the trial's metrics, and then asks for no suggestion until it
    has them."""
    spec = experiment.spec
    template = spec.trial_template
    if spec.early_stopping is not None and not (template is not None and template.retain):
        return ["earlyStopping needs spec.trialTemplate.retain: true on Katib (it deletes an "
                "early-stopped trial's Job before reading its metrics, then waits for them "
                "forever)"]
    return []


def nasflow_services(experiment: V1beta1Experiment) -> dict[str, str]:
    """The algorithm and early-stopping names of the manifest that Katib runs only once
    nasflow's services are registered in its katib-config, each with why."""
    from pipeline.early_stopping import KATIB_SHIPS

    out = {}
    name = experiment.spec.algorithm.algorithm_name
    if not algorithms()[name].katib:
        out[name] = (f"algorithm {name} is nasflow's own: Katib runs it only once nasflow's "
                     "suggestion service is registered (kubectl apply -k manifests/suggestion)")
    early = experiment.spec.early_stopping
    if early is not None and early.algorithm_name not in KATIB_SHIPS:
        out[early.algorithm_name] = (
            f"early stopping {early.algorithm_name} is nasflow's own: Katib runs it only once "
            "nasflow's early-stopping service is registered (kubectl apply -k "
            "manifests/suggestion)")
    return out
