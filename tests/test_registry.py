"""The algorithm registry: one declaration per algorithm, read by validate, create, the
conformance suite and docs/engine.md."""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence

import pytest

from pipeline.katib.settings import Setting
from pipeline.suggestion import create
from pipeline.suggestion.base import Suggestion, TrialResult
from pipeline.suggestion.registry import (
    Algorithm,
    algorithms,
    markdown_table,
    register,
    unregister,
)
from pipeline.validation import cluster_support, engine_support, validate
from tests import test_suggestions
from tests.conftest import ROOT


class Toy(Suggestion):
    """Samples the space uniformly, ``stride`` draws apart (a setting to validate)."""

    uses_history = False

    def suggest(self, index: int, history: Sequence[TrialResult]) -> dict[str, str]:
        return self.space.sample(self.rng(index * int(self.context.settings.get("stride", "1"))))


TOY = Algorithm("toy", "a test's algorithm", {"stride": Setting("int", low=1, high=9)}, Toy,
                katib=False)


@pytest.fixture
def toy():
    register(TOY)
    yield test_suggestions.hp_doc("toy", [{"name": "stride", "value": "3"}])
    unregister("toy")


def test_a_toy_algorithm_is_one_declaration_registered_in_one_place(toy, monkeypatch):
    experiment, problems = validate("toy.yaml", toy)
    assert problems == []
    assert engine_support(experiment) == []
    assert cluster_support(experiment) == [
        "algorithm toy is nasflow's own: Katib runs it only once nasflow's suggestion service "
        "is registered (kubectl apply -k manifests/suggestion)"]
    assert isinstance(create(test_suggestions.context(toy)), Toy)

    bad = copy.deepcopy(toy)
    bad["spec"]["algorithm"]["algorithmSettings"] = [{"name": "stride", "value": "12"},
                                                    {"name": "speed", "value": "1"}]
    _, problems = validate("toy.yaml", bad)
    assert [str(p) for p in problems] == [
        "spec.algorithm.algorithmSettings[0].value: stride must be <= 9, got '12'",
        "spec.algorithm.algorithmSettings[1].name: unknown setting 'speed' for toy; known: stride"]

    # registered without a conformance case: the coverage test fails
    with pytest.raises(AssertionError, match="without a conformance case"):
        test_suggestions.test_every_algorithm_is_in_the_conformance_suite()
    # given one, the whole conformance suite runs on it
    monkeypatch.setitem(test_suggestions.CASES, "toy", toy)
    test_suggestions.test_every_algorithm_is_in_the_conformance_suite()
    suite = test_suggestions.TestConformance()
    suite.test_suggestions_stay_in_the_space("toy")
    suite.test_same_seed_same_search_other_seed_other_search("toy")
    suite.test_resumed_search_suggests_what_the_uninterrupted_one_does("toy", 3)
    suite.test_no_configuration_twice_until_the_space_is_exhausted("toy")


def test_unknown_algorithms_are_listed_in_registry_order():
    doc = test_suggestions.hp_doc("annealing")
    _, problems = validate("x.yaml", doc)
    assert str(problems[0]) == (
        "spec.algorithm.algorithmName: unknown algorithm 'annealing'; known: random, tpe, grid, "
        "multivariate-tpe, bayesianoptimization, cmaes, sobol, nsga2, hyperband, pbt, enas, "
        "darts, evolution, pareto-evolution")


@pytest.mark.parametrize(("setting", "value", "error"), [
    (Setting("int", low=0), "x", "must be an integer"),
    (Setting("int", low=0), "-1", "must be >= 0"),
    (Setting("float", low=0, high=1, low_open=True, high_open=True), "1", "must be < 1"),
    (Setting("float", low=0, low_open=True), "0", "must be > 0"),
    (Setting("float", low=0, low_open=True, none_ok=True), "None", None),
    (Setting("float", low=0.5), "0.25", "must be >= 0.5"),
    (Setting("choice", choices=("a", "b")), "c", "must be one of a, b"),
    (Setting("text"), "anything", None),
])
def test_setting_checks(setting, value, error):
    assert setting.check(value) == error


def test_declarations_are_consistent():
    for name, a in algorithms().items():
        assert (a.space == "nas") == bool(a.outputs), name
        assert (a.suggestion is None) == bool(a.local_limit), name
        assert bool(a.ignored_note) == any(s.honoured != "all" for s in a.settings.values()), name


def test_the_documented_algorithm_table_is_the_registry():
    readme = (ROOT / "docs" / "engine.md").read_text()
    block = re.search(r"<!-- algorithms -->\n(.*?)\n<!-- /algorithms -->", readme, re.S)
    assert block, "docs/engine.md lacks the <!-- algorithms --> block"
    assert block.group(1) == markdown_table(), (
        "the algorithm table of docs/engine.md is stale; print the new one with "
        "python -c 'from pipeline.suggestion.registry import markdown_table; "
        "print(markdown_table())'")
