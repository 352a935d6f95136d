"""``spec.trialTemplate``: what Katib's webhook checks, and what would fail every trial."""

from __future__ import annotations

import re
from typing import Any

from pipeline.katib.manifest import EXPERIMENT_LABEL, Problem
from pipeline.suggestion.registry import algorithms
from pipeline.validation.trial_job import check_job
from pipeline.validation.trial_trainjob import check_trainjob

TRIAL_PARAM_RE = re.compile(r"\$\{trialParameters\.([^}]+)\}")
META_RE = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
META_KEYS = {"Name", "Namespace", "Kind", "APIVersion"}
JOB_KINDS = {"Job", "TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob"}


def _containers(trial_spec: dict) -> list[dict]:
    """The pod's containers, or [] where the trial spec is not shaped like a Job's."""
    spec = trial_spec.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def check_trial_template(spec: Any, raw: dict[str, Any]) -> list[Problem]:
    template = spec.trial_template
    if template is None:
        return [Problem("spec.trialTemplate", "required")]
    out = []
    base = "spec.trialTemplate"
    if (template.trial_spec is None) == (template.config_map is None):
        out.append(Problem(base, "exactly one of trialSpec or configMap is required"))
    if not template.primary_container_name:
        out.append(Problem(f"{base}.primaryContainerName", "required"))
    if template.config_map is not None:
        cm = template.config_map
        missing = [name for name, value in (("configMapName", cm.config_map_name),
                                            ("configMapNamespace", cm.config_map_namespace),
                                            ("templatePath", cm.template_path)) if not value]
        if missing:
            out.append(Problem(f"{base}.configMap", f"{', '.join(missing)} required"))
    if template.trial_parameters is None:
        out.append(Problem(f"{base}.trialParameters", "required"))
    trial_spec = template.trial_spec or {}
    text = str(raw.get("spec", {}).get("trialTemplate", {}).get("trialSpec", ""))
    metadata = trial_spec.get("metadata") or {}
    for field in ("name", "namespace"):
        if isinstance(metadata, dict) and field in metadata:
            out.append(Problem(f"{base}.trialSpec.metadata.{field}", "must be omitted (Katib "
                               "sets it per trial)"))
    if template.trial_spec is not None:
        for field in ("apiVersion", "kind"):
            if not trial_spec.get(field) or not isinstance(trial_spec[field], str):
                out.append(Problem(f"{base}.trialSpec.{field}", "required, a string"))
    kind = trial_spec.get("kind") if isinstance(trial_spec.get("kind"), str) else None
    defaulted = template.trial_spec is not None and kind in JOB_KINDS  # Katib's defaulter
    if not defaulted and not (template.success_condition and template.failure_condition):
        what = f"trial kind {kind!r}" if template.trial_spec is not None else \
            "a trial template from a ConfigMap"
        out.append(Problem(base, f"{what} needs successCondition and failureCondition"))
    out += check_job(trial_spec, f"{base}.trialSpec")
    out += check_trainjob(trial_spec, template.primary_container_name, f"{base}.trialSpec")
    if kind == "Job" and template.primary_container_name:
        names = [c.get("name") for c in _containers(trial_spec)]
        if names and template.primary_container_name not in names:
            out.append(Problem(f"{base}.primaryContainerName",
                               f"{template.primary_container_name!r} is not a container of the "
                               f"trial Job (containers: {', '.join(map(str, names))})"))
    out += _experiment_label(trial_spec, raw, base)
    declared = [p.name for p in template.trial_parameters or []]
    references = [p.reference for p in template.trial_parameters or []]
    algorithm = spec.algorithm.algorithm_name if spec.algorithm else ""
    hp_names = {p.name for p in spec.parameters or []}
    declared_algorithm = algorithms().get(algorithm)
    nas_outputs = declared_algorithm.outputs if declared_algorithm else frozenset()
    for i, p in enumerate(template.trial_parameters or []):
        where = f"{base}.trialParameters[{i}]"
        if not p.name or "{" in p.name or "}" in p.name:
            out.append(Problem(f"{where}.name", "required, without { or }"))
        if not p.reference:
            out.append(Problem(f"{where}.reference", "required: a parameter, an algorithm's "
                               "output or ${trialSpec.<field>}"))
            continue
        if declared.count(p.name) > 1:
            out.append(Problem(f"{where}.name", f"duplicate name {p.name!r}"))
        if references.count(p.reference) > 1:
            out.append(Problem(f"{where}.reference", f"duplicate reference {p.reference!r}"))
        if template.trial_spec is not None and "${trialParameters." + str(p.name) + "}" not in text:
            out.append(Problem(f"{where}.name", f"{p.name!r} is declared but never used in the "
                               "trialSpec"))
        meta = META_RE.match(p.reference)
        if meta:
            out += _meta_reference(meta.group(1), trial_spec, f"{where}.reference")
        elif spec.parameters is not None and p.reference not in hp_names:
            out.append(Problem(f"{where}.reference", f"{p.reference!r} is not a parameter in "
                               "spec.parameters"))
        elif nas_outputs and p.reference not in nas_outputs:
            out.append(Problem(f"{where}.reference", f"{algorithm} outputs "
                               f"{', '.join(sorted(nas_outputs))}, not {p.reference!r} (nasflow "
                               "refuses it now; Katib would fail every trial at creation)"))
    used = {p.reference for p in template.trial_parameters or []}
    for missing in sorted(nas_outputs - used):
        out.append(Problem(f"{base}.trialParameters", f"{algorithm} assigns {missing!r}; "
                           "declare a trial parameter referencing it (nasflow refuses it now; "
                           "Katib would fail every trial at creation)"))
    for name in sorted(set(TRIAL_PARAM_RE.findall(text)) - set(declared)):
        out.append(Problem(f"{base}.trialSpec", f"${{trialParameters.{name}}} is used but not "
                           "declared in trialParameters"))
    return out


def _meta_reference(key: str, trial_spec: dict, where: str) -> list[Problem]:
    match = re.match(r"^(Labels|Annotations)\[(.+)\]$", key)
    if match:
        metadata = trial_spec.get("metadata") or {}
        values = metadata.get(match.group(1).lower()) if isinstance(metadata, dict) else None
        if not isinstance(values, dict) or match.group(2) not in values:
            return [Problem(where, f"trialSpec.metadata.{match.group(1).lower()} has no "
                            f"{match.group(2)!r} (Katib substitutes the template's own metadata; "
                            "nasflow refuses it now, Katib would fail every trial at creation)")]
        return []
    if key not in META_KEYS:
        return [Problem(where, f"unknown trial metadata ${{trialSpec.{key}}}; use Name, "
                        "Namespace, Kind, APIVersion, Labels[key] or Annotations[key]")]
    return []




def _experiment_label(trial_spec: dict, raw: dict[str, Any], base: str) -> list[Problem]:
    """Katib substitutes ``${trialSpec.Labels[...]}`` from the template as written, so a label
    ``katib.kubeflow.org/experiment`` left at another name (a copied manifest, renamed) sends
    every trial's MLflow run, on both engines, into the other experiment."""
    metadata = trial_spec.get("metadata") if isinstance(trial_spec, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    value = labels.get(EXPERIMENT_LABEL) if isinstance(labels, dict) else None
    name = (raw.get("metadata") or {}).get("name") if isinstance(raw.get("metadata"), dict) \
        else None
    if value is None or not isinstance(name, str) or value == name:
        return []
    return [Problem(f"{base}.trialSpec.metadata.labels[{EXPERIMENT_LABEL}]",
                    f"is {value!r} but metadata.name is {name!r}: set it to {name!r} (trials "
                    f"read their MLflow experiment from this label and would log into {value!r})")]
