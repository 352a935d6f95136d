"""Pareto dominance for multi-objective search: the objective list, non-dominated sorting and
crowding distance (Deb et al. 2002, as NSGA-II and NSGA-Net use them), and the 2-D hypervolume.

Points are tuples of *scores*, higher is better in every coordinate (a minimised metric enters
negated), so one dominance rule serves every objective list.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.katib.manifest import Problem

Point = tuple[float, ...]


def parse_objectives(text: str) -> list[tuple[str, bool]]:
    """``"Validation-Accuracy:max,Parameter-Count:min"`` → [(metric, maximize), ...]."""
    out = []
    for part in text.split(","):
        metric, _, direction = part.strip().rpartition(":")
        if not metric or direction not in ("max", "min"):
            raise ValueError(f"{part.strip()!r} is not METRIC:max or METRIC:min")
        if metric in (m for m, _ in out):
            raise ValueError(f"{metric} is listed twice")
        out.append((metric, direction == "max"))
    if len(out) < 2:
        raise ValueError("needs at least two objectives (one objective: use the experiment's "
                         "objective and a single-objective algorithm)")
    return out


def scores(values: Mapping[str, float | None], objectives: Sequence[tuple[str, bool]]
           ) -> Point | None:
    """The point of a trial's metric values (None if one is missing or not finite)."""
    point = []
    for metric, maximize in objectives:
        value = values.get(metric)
        if value is None or not math.isfinite(value):
            return None
        point.append(value if maximize else -value)
    return tuple(point)


def dominates(a: Point, b: Point) -> bool:
    return all(x >= y for x, y in zip(a, b, strict=True)) and a != b


def non_dominated_ranks(points: Sequence[Point]) -> list[int]:
    """Each point's front: 0 for the non-dominated ones, 1 for those only they dominate, ..."""
    dominated_by = [sum(dominates(q, p) for q in points) for p in points]
    beats = [[j for j, q in enumerate(points) if dominates(p, q)] for p in points]
    ranks = [0] * len(points)
    current = [i for i, n in enumerate(dominated_by) if n == 0]
    rank = 0
    while current:
        following = []
        for i in current:
            ranks[i] = rank
            for j in beats[i]:
                dominated_by[j] -= 1
                if dominated_by[j] == 0:
                    following.append(j)
        current, rank = following, rank + 1
    return ranks


def crowding_distances(points: Sequence[Point]) -> list[float]:
    """Deb's crowding distance within one front: the ends of each coordinate are infinite."""
    distance = [0.0] * len(points)
    if len(points) <= 2:
        return [math.inf] * len(points)
    for k in range(len(points[0])):
        order = sorted(range(len(points)), key=lambda i: points[i][k])
        low, high = points[order[0]][k], points[order[-1]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for j in range(1, len(order) - 1):
            spread = points[order[j + 1]][k] - points[order[j - 1]][k]
            distance[order[j]] += spread / (high - low)
    return distance


def ranked(points: Sequence[Point]) -> list[tuple[int, float]]:
    """(front, -crowding distance) of each point: NSGA-II's order, smaller is better."""
    ranks = non_dominated_ranks(points)
    crowding = [0.0] * len(points)
    for rank in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == rank]
        for i, distance in zip(members, crowding_distances([points[i] for i in members]),
                               strict=True):
            crowding[i] = distance
    return [(ranks[i], -crowding[i]) for i in range(len(points))]


def front(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points (a repeated point is kept once: the first)."""
    ranks = non_dominated_ranks(points)
    seen: set[Point] = set()
    out = []
    for i, p in enumerate(points):
        if ranks[i] == 0 and p not in seen:
            seen.add(p)
            out.append(i)
    return out


def hypervolume_2d(points: Sequence[Point], reference: Point) -> float:
    """The area the points dominate above ``reference`` (both coordinates higher-is-better)."""
    kept = sorted({p for p in points if p[0] > reference[0] and p[1] > reference[1]},
                  key=lambda p: (-p[0], -p[1]))
    area, best_y = 0.0, reference[1]
    for x, y in kept:  # x decreasing: each point adds the strip its y rises above the others
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = y
    return area


def check_objectives(spec: Any, settings: Mapping[str, str]) -> list[Problem]:
    """The ``objectives`` setting parses, and the experiment collects every metric it names."""
    text = settings.get("objectives")
    if text is None:
        return []  # required: the registry says so
    where = "spec.algorithm.algorithmSettings"
    names = [s.name for s in spec.algorithm.algorithm_settings or []]
    where += f"[{names.index('objectives')}].value"
    try:
        objectives = parse_objectives(text)
    except ValueError as exc:
        return [Problem(where, f"objectives {exc}")]
    collected = {spec.objective.objective_metric_name,
                 *(spec.objective.additional_metric_names or [])}
    return [Problem(where, f"objective {metric} is not collected: add it to "
                    "spec.objective.additionalMetricNames") for metric, _ in objectives
            if metric not in collected]
