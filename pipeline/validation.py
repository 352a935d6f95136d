"""The checks Katib's admission webhook and suggestion services make, before anything starts.

Every problem names its field path and the rule. :func:`validate` covers what Katib itself would
refuse; :func:`engine_support` says what the embedded engine cannot run (a valid manifest that
needs a cluster), and :func:`cluster_support` what Katib cannot run (nasflow-only algorithms).
"""

from __future__ import annotations

import math
import re
from typing import Any

from kubeflow_katib_api.models import V1beta1Experiment

from pipeline.manifest import Problem, parse
from pipeline.search_space import DISTRIBUTIONS, Space
from pipeline.trial_job import check_job

NAME_RE = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
TRIAL_PARAM_RE = re.compile(r"\$\{trialParameters\.([^}]+)\}")
META_RE = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
META_KEYS = {"Name", "Namespace", "Kind", "APIVersion"}
COLLECTORS = {"StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom", "Push"}
# where Katib's defaulter points a File or TensorFlowEvent collector without a source
DEFAULT_PATHS = {"File": "/var/log/katib/metrics.log", "TensorFlowEvent": "/var/log/katib/tfevent/"}
NAS_OUTPUTS = {"enas": {"architecture", "nn_config"},
               "darts": {"algorithm-settings", "search-space", "num-layers"}}
LOCAL_ONLY_ALGORITHMS = {"evolution"}
JOB_KINDS = {"Job", "TFJob", "PyTorchJob", "XGBoostJob", "MPIJob", "TrainJob"}


def _int(lo: int | None = None, hi: int | None = None):
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return "must be an integer"
        if lo is not None and n < lo:
            return f"must be >= {lo}"
        if hi is not None and n > hi:
            return f"must be <= {hi}"
        return None
    return check


def _float(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, none_ok: bool = False):
    def check(v: str) -> str | None:
        if none_ok and v == "None":
            return None
        try:
            x = float(v)
        except ValueError:
            return "must be a number"
        if lo is not None and (x <= lo if lo_open else x < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (x >= hi if hi_open else x > hi):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check


def _choice(*options: str):
    def check(v: str) -> str | None:
        return None if v in options else f"must be one of {', '.join(options)}"
    return check


def _skips(v: str) -> str | None:
    return None if v == "None" else _int(0)(v)


def _any(v: str) -> str | None:
    return None


# algorithm -> setting -> check (docs/katib.md §1.4, §2, §5; evolution is nasflow's own).
ALGORITHM_SETTINGS: dict[str, dict[str, Any]] = {
    "random": {"random_state": _int(0)},
    "tpe": {"gamma": _float(0, 1, lo_open=True, hi_open=True),
            "prior_weight": _float(0, lo_open=True), "n_EI_candidates": _int(1),
            "random_state": _int(0)},
    "grid": {"random_state": _int(0)},
    "multivariate-tpe": {"n_startup_trials": _int(0), "n_ei_candidates": _int(0),
                         "random_state": _int(0)},
    "bayesianoptimization": {"base_estimator": _choice("GP", "RF", "ET", "GBRT"),
                             "n_initial_points": _int(0),
                             "acq_func": _choice("gp_hedge", "LCB", "EI", "PI", "EIps", "PIps"),
                             "acq_optimizer": _choice("auto", "sampling", "lbfgs"),
                             "random_state": _int(0)},
    "cmaes": {"random_state": _int(0), "sigma": _float(0, lo_open=True),
              "restart_strategy": _choice("ipop", "bipop", "none")},
    "sobol": {},
    "hyperband": {"r_l": _float(0, lo_open=True), "resource_name": _any,
                  "eta": _float(1, lo_open=True)},
    "pbt": {"suggestion_trial_dir": _any, "n_population": _int(5),
            "truncation_threshold": _float(0, 1), "resample_probability": _float(0, 1)},
    "enas": {"controller_hidden_size": _int(1),
             "controller_temperature": _float(0, lo_open=True, none_ok=True),
             "controller_tanh_const": _float(0, lo_open=True, none_ok=True),
             "controller_entropy_weight": _float(0, lo_open=True, none_ok=True),
             "controller_baseline_decay": _float(0, 1, lo_open=True),
             "controller_learning_rate": _float(0, 1, lo_open=True),
             "controller_skip_target": _float(0, 1, lo_open=True),
             "controller_skip_weight": _float(0, lo_open=True, none_ok=True),
             "controller_train_steps": _int(1), "controller_log_every_steps": _int(1)},
    "darts": {"num_epochs": _int(1), "w_lr": _float(0), "w_lr_min": _float(0),
              "w_momentum": _float(0), "w_weight_decay": _float(0), "w_grad_clip": _float(0),
              "alpha_lr": _float(0), "alpha_weight_decay": _float(0),
              "batch_size": _int(1), "num_workers": _int(0), "init_channels": _int(1),
              "print_step": _int(1), "num_nodes": _int(1), "stem_multiplier": _int(1),
              # nasflow's trial extensions (Katib passes unknown settings through)
              "unrolled": _choice("true", "false"),
              "max_skip_connections": _skips, "warmup_epochs": _int(0)},
    "evolution": {"population_size": _int(2), "sample_size": _int(1),
                  "random_state": _int(0)},
}
REQUIRED_SETTINGS = {"hyperband": ("r_l", "resource_name"),
                     "pbt": ("suggestion_trial_dir", "n_population", "truncation_threshold")}
EARLY_STOPPING_SETTINGS = {"medianstop": {"min_trials_required": _int(1), "start_step": _int(1)}}


def validate(source: str, raw: dict[str, Any]) -> tuple[V1beta1Experiment | None, list[Problem]]:
    """All problems Katib would refuse the manifest for (empty list = valid)."""
    experiment, problems = parse(source, raw)
    if experiment is None:
        return None, problems
    if raw.get("apiVersion") != "kubeflow.org/v1beta1":
        problems.append(Problem("apiVersion", "must be kubeflow.org/v1beta1"))
    name = (experiment.metadata.name if experiment.metadata else None) or ""
    if not NAME_RE.match(name):
        problems.append(Problem("metadata.name", f"{name!r} must match {NAME_RE.pattern}"))
    elif len(name) > 40:
        problems.append(Problem("metadata.name", f"must be at most 40 characters ({len(name)})"))
    spec = experiment.spec
    if spec is None:
        return experiment, [*problems, Problem("spec", "required")]
    problems += _counts(spec)
    problems += _objective(spec)
    problems += _algorithm(spec, raw)
    problems += _space(spec)
    problems += _trial_template(spec, raw)
    problems += _metrics_collector(spec, raw)
    problems += _early_stopping(spec)
    if spec.resume_policy not in (None, "Never", "LongRunning", "FromVolume"):
        problems.append(Problem("spec.resumePolicy", "must be Never, LongRunning or FromVolume"))
    return experiment, problems


def _int32(value: Any, where: str) -> list[Problem]:
    """Katib's counts and sizes are Go int32s: a larger number cannot even be decoded."""
    if isinstance(value, int) and not -2**31 <= value < 2**31:
        return [Problem(where, f"{value} does not fit Katib's int32 (at most {2**31 - 1})")]
    return []


def _counts(spec) -> list[Problem]:
    out = []
    for field, value in (("maxTrialCount", spec.max_trial_count),
                         ("parallelTrialCount", spec.parallel_trial_count),
                         ("maxFailedTrialCount", spec.max_failed_trial_count)):
        out += _int32(value, f"spec.{field}")
        if value is not None and value < (0 if field == "maxFailedTrialCount" else 1):
            out.append(Problem(f"spec.{field}", "must be positive"))
    if spec.max_trial_count is not None:
        if (spec.parallel_trial_count or 3) > spec.max_trial_count:
            out.append(Problem("spec.parallelTrialCount",
                               f"must be <= maxTrialCount ({spec.max_trial_count})"))
        if (spec.max_failed_trial_count or 0) > spec.max_trial_count:
            out.append(Problem("spec.maxFailedTrialCount",
                               f"must be <= maxTrialCount ({spec.max_trial_count})"))
    return out


def _objective(spec) -> list[Problem]:
    objective = spec.objective
    if objective is None:
        return [Problem("spec.objective", "required")]
    out = []
    if objective.goal is not None and not math.isfinite(objective.goal):
        out.append(Problem("spec.objective.goal", "must be a finite number"))
    if objective.type not in ("minimize", "maximize"):
        out.append(Problem("spec.objective.type", "must be minimize or maximize"))
    if not objective.objective_metric_name:
        out.append(Problem("spec.objective.objectiveMetricName", "required"))
    additional = objective.additional_metric_names or []
    if objective.objective_metric_name in additional:
        i = additional.index(objective.objective_metric_name)
        out.append(Problem(f"spec.objective.additionalMetricNames[{i}]",
                           "must not repeat the objective metric"))
    for i, strategy in enumerate(objective.metric_strategies or []):
        if strategy.value not in ("min", "max", "latest"):
            out.append(Problem(f"spec.objective.metricStrategies[{i}].value",
                               "must be min, max or latest"))
    return out


def _algorithm(spec, raw) -> list[Problem]:
    algorithm = spec.algorithm
    if algorithm is None or not algorithm.algorithm_name:
        return [Problem("spec.algorithm.algorithmName", "required")]
    name = algorithm.algorithm_name
    if name not in ALGORITHM_SETTINGS:
        return [Problem("spec.algorithm.algorithmName",
                        f"unknown algorithm {name!r}; known: {', '.join(ALGORITHM_SETTINGS)}")]
    checks = ALGORITHM_SETTINGS[name]
    settings = {s.name: s.value for s in algorithm.algorithm_settings or []}
    out = []
    for i, setting in enumerate(algorithm.algorithm_settings or []):
        where = f"spec.algorithm.algorithmSettings[{i}]"
        if setting.name not in checks:
            if name != "darts":  # Katib's DARTS service passes unknown names through
                out.append(Problem(f"{where}.name", f"unknown setting {setting.name!r} for {name}"
                                   f"; known: {', '.join(checks) or 'none'}"))
            continue
        error = checks[setting.name](str(setting.value))
        if error:
            out.append(Problem(f"{where}.value", f"{setting.name} {error}, got {setting.value!r}"))
    for required in REQUIRED_SETTINGS.get(name, ()):
        if required not in settings:
            out.append(Problem("spec.algorithm.algorithmSettings", f"{name} requires {required}"))
    is_nas = name in NAS_OUTPUTS
    if is_nas and spec.nas_config is None:
        out.append(Problem("spec.nasConfig", f"{name} needs a nasConfig"))
    if not is_nas and name != "evolution" and spec.nas_config is not None:
        out.append(Problem("spec.algorithm.algorithmName",
                           f"{name} searches spec.parameters, not a nasConfig"))
    params = spec.parameters or []
    if name == "hyperband" and "resource_name" in settings:
        if settings["resource_name"] not in {p.name for p in params}:
            out.append(Problem("spec.algorithm.algorithmSettings",
                               f"resource_name {settings['resource_name']!r} is not a parameter"))
        try:
            eta, r_l = float(settings.get("eta", 3)), float(settings["r_l"])
            needed = math.ceil(eta ** math.floor(math.log(r_l) / math.log(eta)))
        except (ValueError, ZeroDivisionError):
            needed = 0
        if (spec.parallel_trial_count or 3) < needed:
            out.append(Problem("spec.parallelTrialCount",
                               f"hyperband with eta={settings.get('eta', 3)}, r_l={settings['r_l']}"
                               f" needs at least {needed} parallel trials"))
    if name == "cmaes" and sum(p.parameter_type in ("int", "double") for p in params) < 2:
        out.append(Problem("spec.parameters", "cmaes needs at least 2 int or double parameters"))
    if name == "grid" and params and spec.max_trial_count:
        total = Space.of(spec).size
        if math.isinf(total):
            out.append(Problem("spec.parameters", "grid needs a finite space: give double "
                               "parameters a step"))
        elif spec.max_trial_count > total:
            out.append(Problem("spec.maxTrialCount", f"grid has only {total:.0f} combinations"))
    return out


def _space(spec) -> list[Problem]:
    if spec.parameters and spec.nas_config:
        return [Problem("spec.parameters", "parameters and nasConfig are mutually exclusive")]
    if not spec.parameters and not spec.nas_config:
        return [Problem("spec", "one of parameters or nasConfig is required")]
    out = []
    seen: set[str] = set()
    for i, p in enumerate(spec.parameters or []):
        where = f"spec.parameters[{i}]"
        if not p.name:
            out.append(Problem(f"{where}.name", "required"))
        elif p.name in seen:
            out.append(Problem(f"{where}.name", f"duplicate parameter {p.name!r}"))
        seen.add(p.name or "")
        out += _feasible_space(p, where)
    if spec.nas_config:
        out += _nas_config(spec.nas_config)
    return out


def _feasible_space(p, where: str) -> list[Problem]:
    fs = p.feasible_space
    kind = p.parameter_type
    if kind not in ("int", "double", "categorical", "discrete"):
        return [Problem(f"{where}.parameterType", "must be int, double, categorical or discrete")]
    if fs is None:
        return [Problem(f"{where}.feasibleSpace", "required")]
    where = f"{where}.feasibleSpace"
    if kind in ("categorical", "discrete"):
        given = [k for k in ("min", "max", "step") if getattr(fs, k) not in (None, "")]
        if given:
            return [Problem(where, f"a {kind} parameter takes a list, not {'/'.join(given)}")]
        if not fs.list:
            return [Problem(f"{where}.list", f"a {kind} parameter needs a non-empty list")]
        if kind == "discrete":
            for j, v in enumerate(fs.list):
                try:
                    float(v)
                except ValueError:
                    return [Problem(f"{where}.list[{j}]",
                                    f"discrete values must be numbers: {v!r}")]
        return []
    out = []
    if fs.list:
        out.append(Problem(f"{where}.list", f"an {kind} parameter takes min/max, not a list"))
    number = int if kind == "int" else float
    bounds = {}
    for key in ("min", "max"):
        raw = getattr(fs, key)
        try:
            bounds[key] = number(raw)
        except (TypeError, ValueError):
            out.append(Problem(f"{where}.{key}", f"must be an {kind} value, got {raw!r}"))
    if len(bounds) == 2 and bounds["min"] > bounds["max"]:
        out.append(Problem(f"{where}.min", f"{bounds['min']} is greater than max {bounds['max']}"))
    if fs.step is not None:
        try:
            if number(fs.step) <= 0:
                out.append(Problem(f"{where}.step", "must be > 0"))
        except ValueError:
            out.append(Problem(f"{where}.step", f"must be an {kind} value, got {fs.step!r}"))
    if fs.distribution is not None:
        if fs.distribution not in DISTRIBUTIONS:
            out.append(Problem(f"{where}.distribution",
                               f"must be one of {', '.join(DISTRIBUTIONS)}"))
        elif fs.distribution.startswith("log") and bounds.get("min", 1) <= 0:
            out.append(Problem(f"{where}.min", f"{fs.distribution} needs min > 0"))
    return out


def _nas_config(nas) -> list[Problem]:
    out = []
    graph = nas.graph_config
    if graph is None:
        return [Problem("spec.nasConfig.graphConfig", "required")]
    where = "spec.nasConfig.graphConfig"
    out += _int32(graph.num_layers, f"{where}.numLayers")
    for field, sizes in (("inputSizes", graph.input_sizes), ("outputSizes", graph.output_sizes)):
        for i, size in enumerate(sizes or []):
            out += _int32(size, f"{where}.{field}[{i}]")
    if not graph.num_layers or graph.num_layers < 1:
        out.append(Problem("spec.nasConfig.graphConfig.numLayers", "required, >= 1"))
    if not nas.operations:
        out.append(Problem("spec.nasConfig.operations", "at least one operation is required"))
    for i, op in enumerate(nas.operations or []):
        where = f"spec.nasConfig.operations[{i}]"
        if not op.operation_type:
            out.append(Problem(f"{where}.operationType", "required"))
        params = op.parameters or []
        if not params:
            # Katib's suggestion services refuse this ("Missing ParameterConfigs in Operation").
            out.append(Problem(f"{where}.parameters", "every operation needs at least one "
                               "parameter (Katib: Missing ParameterConfigs in Operation)"))
        for j, p in enumerate(params):
            out += _feasible_space(p, f"{where}.parameters[{j}]")
    return out


def _darts_primitives(spec) -> list[Problem]:
    """Katib accepts any ``<type>_<f>x<f>``, but its trial (and nasflow's) only knows DARTS'
    primitives: ``max_pooling_5x5`` would fail every trial with a KeyError."""
    from trial_image.frontends.genotype import PRIMITIVES

    out = []
    for i, op in enumerate((spec.nas_config.operations if spec.nas_config else None) or []):
        if op.operation_type == "skip_connection" or not op.parameters:
            continue
        space = op.parameters[0].feasible_space
        unknown = [f"{op.operation_type}_{f}x{f}" for f in (space.list if space else None) or []
                   if f"{op.operation_type}_{f}x{f}" not in PRIMITIVES]
        if unknown:
            out.append(Problem(f"spec.nasConfig.operations[{i}]",
                               f"DARTS has no primitive {', '.join(unknown)} (known: "
                               f"{', '.join(PRIMITIVES)})"))
    return out


def _nas_graph_required(spec) -> list[Problem]:
    graph = spec.nas_config.graph_config if spec.nas_config else None
    out = []
    if graph is not None:
        sizes = (("inputSizes", graph.input_sizes), ("outputSizes", graph.output_sizes))
        for field, value in sizes:
            if not value:
                out.append(Problem(f"spec.nasConfig.graphConfig.{field}", "required for enas"))
    return out


def _containers(trial_spec: dict) -> list[dict]:
    """The pod's containers, or [] where the trial spec is not shaped like a Job's."""
    spec = trial_spec.get("spec")
    template = spec.get("template") if isinstance(spec, dict) else None
    pod = template.get("spec") if isinstance(template, dict) else None
    containers = pod.get("containers") if isinstance(pod, dict) else None
    return [c for c in containers if isinstance(c, dict)] if isinstance(containers, list) else []


def _trial_template(spec, raw) -> list[Problem]:
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
    if spec.algorithm and spec.algorithm.algorithm_name == "enas":
        out += _nas_graph_required(spec)
    if spec.algorithm and spec.algorithm.algorithm_name == "darts":
        out += _darts_primitives(spec)
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
    if kind == "Job" and template.primary_container_name:
        names = [c.get("name") for c in _containers(trial_spec)]
        if names and template.primary_container_name not in names:
            out.append(Problem(f"{base}.primaryContainerName",
                               f"{template.primary_container_name!r} is not a container of the "
                               f"trial Job (containers: {', '.join(map(str, names))})"))
    declared = [p.name for p in template.trial_parameters or []]
    references = [p.reference for p in template.trial_parameters or []]
    algorithm = spec.algorithm.algorithm_name if spec.algorithm else ""
    hp_names = {p.name for p in spec.parameters or []}
    nas_outputs = NAS_OUTPUTS.get(algorithm, set())
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


def _metrics_collector(spec, raw) -> list[Problem]:
    """Katib's rules after its defaulter filled the collector's defaults (docs/katib.md §3)."""
    mc = spec.metrics_collector_spec
    if mc is None:
        return []
    base = "spec.metricsCollectorSpec"
    kind = mc.collector.kind if mc.collector and mc.collector.kind else "StdOut"
    if kind not in COLLECTORS:
        return [Problem(f"{base}.collector.kind",
                        f"must be one of {', '.join(sorted(COLLECTORS))}")]
    out = []
    source = mc.source
    path = source.file_system_path if source else None
    formats = (source.filter.metrics_format if source and source.filter else None) or []
    for i, fmt in enumerate(formats):
        try:
            groups = re.compile(fmt).groups
        except re.error as exc:
            out.append(Problem(f"{base}.source.filter.metricsFormat[{i}]", f"invalid regex: {exc}"))
            continue
        if groups < 2:
            out.append(Problem(f"{base}.source.filter.metricsFormat[{i}]",
                               "needs two capture groups: metric name and value"))
    where = f"{base}.source.fileSystemPath"
    if kind == "File":
        location = (path.path if path else None) or DEFAULT_PATHS["File"]
        if (path.kind if path else None) not in (None, "", "File"):
            out.append(Problem(f"{where}.kind", "must be File"))
        if not location.startswith("/"):
            out.append(Problem(f"{where}.path", "must be absolute"))
        fmt = (path.format if path else None) or "TEXT"
        if fmt not in ("TEXT", "JSON"):
            out.append(Problem(f"{where}.format", "must be TEXT or JSON"))
        if fmt == "JSON" and source.filter is not None:
            out.append(Problem(f"{base}.source.filter", "must be omitted with the JSON format"))
    if kind == "TensorFlowEvent":
        location = (path.path if path else None) or DEFAULT_PATHS["TensorFlowEvent"]
        if (path.kind if path else None) not in (None, "", "Directory"):
            out.append(Problem(f"{where}.kind", "must be Directory"))
        if not location.startswith("/"):
            out.append(Problem(f"{where}.path", "must be an absolute directory"))
        if path is not None and path.format:
            out.append(Problem(f"{where}.format", "must be empty"))
    if kind == "PrometheusMetric":
        http = ((raw.get("spec") or {}).get("metricsCollectorSpec") or {}).get(
            "source", {}).get("httpGet") or {}
        port = http.get("port", 8080)
        if not re.fullmatch(r"\d+", str(port)) or int(port) <= 0:
            out.append(Problem(f"{base}.source.httpGet.port",
                               f"must be a positive integer, got {port!r}"))
        if not str(http.get("path", "/metrics")).startswith("/"):
            out.append(Problem(f"{base}.source.httpGet.path", "must start with /"))
    if kind == "Custom":
        if mc.collector.custom_collector is None:
            out.append(Problem(f"{base}.collector.customCollector", "required for Custom"))
        if path is not None and (not (path.path or "").startswith("/")
                                 or path.kind not in ("Directory", "File")):
            out.append(Problem(where, "needs an absolute path and kind File or Directory"))
    return out


def _early_stopping(spec) -> list[Problem]:
    es = spec.early_stopping
    if es is None:
        return []
    if es.algorithm_name not in EARLY_STOPPING_SETTINGS:
        return [Problem("spec.earlyStopping.algorithmName", "must be medianstop")]
    out = []
    checks = EARLY_STOPPING_SETTINGS[es.algorithm_name]
    for i, setting in enumerate(es.algorithm_settings or []):
        where = f"spec.earlyStopping.algorithmSettings[{i}]"
        if setting.name not in checks:
            out.append(Problem(f"{where}.name", f"unknown setting {setting.name!r}"))
        elif error := checks[setting.name](str(setting.value)):
            out.append(Problem(f"{where}.value", f"{setting.name} {error}"))
    return out


def engine_support(experiment: V1beta1Experiment) -> list[str]:
    """Why the embedded engine cannot run a valid manifest (empty = it can)."""
    spec = experiment.spec
    template = spec.trial_template
    reasons = []
    if template.config_map is not None:
        reasons.append("trial template from a ConfigMap (needs the cluster's ConfigMap)")
    kind = (template.trial_spec or {}).get("kind")
    if template.trial_spec is not None and (kind, (template.trial_spec or {}).get(
            "apiVersion")) != ("Job", "batch/v1"):
        reasons.append(f"trial kind {kind} (the embedded engine runs a batch/v1 Job's primary "
                       "container)")
    collector = (spec.metrics_collector_spec.collector.kind
                 if spec.metrics_collector_spec and spec.metrics_collector_spec.collector
                 else "StdOut") or "StdOut"
    if collector not in ("StdOut", "File"):
        reasons.append(f"metrics collector {collector} (StdOut and File are supported)")
    if spec.algorithm.algorithm_name == "pbt":
        reasons.append("algorithm pbt (needs Katib's shared checkpoint volume)")
    return reasons


# Settings Katib's services use that the embedded engine accepts but does not apply (for Katib
# compatibility): algorithm -> (setting -> the value the engine's algorithm matches, or None),
# and what the engine does instead.
IGNORED_LOCALLY: dict[str, tuple[dict[str, str | None], str]] = {
    "bayesianoptimization": (
        {"base_estimator": "GP", "acq_func": "EI", "acq_optimizer": None},
        "the engine's bayesianoptimization is Optuna's GPSampler: a Gaussian process with "
        "expected improvement, optimised by its own multi-start search"),
    "cmaes": ({"restart_strategy": "none"},
              "Optuna's CmaEsSampler (>= 4.4) has no restarts"),
    "enas": ({"controller_log_every_steps": None},
             "nasflow's controller logs no training steps"),
    "darts": ({"num_workers": None},
              "the trial's tf.data pipeline prefetches on its own threads"),
}


def ignored_settings(experiment: V1beta1Experiment) -> list[str]:
    """Settings of a valid manifest that the embedded engine accepts for Katib and ignores."""
    algorithm = experiment.spec.algorithm
    honoured, instead = IGNORED_LOCALLY.get(algorithm.algorithm_name, ({}, ""))
    ignored = [f"{s.name}={s.value}" for s in algorithm.algorithm_settings or []
               if s.name in honoured and str(s.value) != honoured[s.name]]
    if not ignored:
        return []
    return [f"{algorithm.algorithm_name} setting(s) {', '.join(ignored)} (accepted for Katib, "
            f"ignored by nasflow run: {instead})"]


def cluster_support(experiment: V1beta1Experiment) -> list[str]:
    """Why Katib cannot run it (empty = it can)."""
    name = experiment.spec.algorithm.algorithm_name
    if name in LOCAL_ONLY_ALGORITHMS:
        return [f"algorithm {name} is nasflow's own and runs only on the embedded engine"]
    return []
