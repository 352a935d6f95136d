"""``spec.parameters`` and ``spec.nasConfig``: the space Katib's suggestion services search."""

from __future__ import annotations

from typing import Any

from pipeline.katib.manifest import Problem
from pipeline.katib.search_space import DISTRIBUTIONS, operation_count
from pipeline.validation.experiment import int32

# Bounds that keep every search space countable and samplable in bounded memory and time:
INT_LIMIT = 2**53  # |int bounds|: integers a float64 holds exactly, as Optuna's samplers need
MAX_OPERATIONS = 10_000  # ENAS operations after expanding each operation's parameter values
MAX_LAYERS = 64  # ENAS layers: the architecture string grows with layers squared (skip bits)


def check_space(spec: Any) -> list[Problem]:
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
                    if not abs(float(v)) <= 1e300:
                        raise ValueError
                except (TypeError, ValueError):
                    return [Problem(f"{where}.list[{j}]",
                                    f"discrete values must be finite numbers: {v!r}")]
        return []
    out = []
    if fs.list:
        out.append(Problem(f"{where}.list", f"an {kind} parameter takes min/max, not a list"))
    number = int if kind == "int" else float
    bounds = {}
    for key in ("min", "max", "step"):
        raw = getattr(fs, key)
        if raw is None and key == "step":
            continue
        try:
            bounds[key] = number(raw)
        except (TypeError, ValueError, OverflowError):
            out.append(Problem(f"{where}.{key}", f"must be an {kind} value, got {raw!r}"))
            continue
        value = bounds[key]
        if abs(value) > INT_LIMIT if kind == "int" else not abs(value) <= 1e300:  # nan, inf
            limit = f"between -{INT_LIMIT} and {INT_LIMIT}" if kind == "int" else \
                "a finite number between -1e300 and 1e300"
            out.append(Problem(f"{where}.{key}", f"{raw!r} must be {limit}"))
            del bounds[key]
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        out.append(Problem(f"{where}.min", f"{bounds['min']} is greater than max {bounds['max']}"))
    if bounds.get("step", 1) <= 0:
        out.append(Problem(f"{where}.step", "must be > 0"))
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
    out += int32(graph.num_layers, f"{where}.numLayers")
    for field, sizes in (("inputSizes", graph.input_sizes), ("outputSizes", graph.output_sizes)):
        for i, size in enumerate(sizes or []):
            out += int32(size, f"{where}.{field}[{i}]")
    if not graph.num_layers or graph.num_layers < 1:
        out.append(Problem("spec.nasConfig.graphConfig.numLayers", "required, >= 1"))
    elif graph.num_layers > MAX_LAYERS:
        out.append(Problem("spec.nasConfig.graphConfig.numLayers",
                           f"{graph.num_layers} layers: nasflow searches at most {MAX_LAYERS}"))
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
    if not out:
        count = operation_count(nas)
        if count > MAX_OPERATIONS:
            out.append(Problem("spec.nasConfig.operations", f"{count:.3g} operations after "
                               f"expanding each parameter's values (ENAS numbers every "
                               f"combination); at most {MAX_OPERATIONS:,}: narrow the ranges or "
                               "give double parameters a coarser step"))
    return out


