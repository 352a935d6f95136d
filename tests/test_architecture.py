"""The package layout is the architecture: the import graph (every ``import``, module-level or
inside a function, read with ``ast``) has no circle, and no layer imports a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Lowest first: a module may import its own layer and the layers before it.
LAYERS = ("trial_image", "pipeline.katib", "pipeline.suggestion", "pipeline.early_stopping",
          "pipeline.validation", "pipeline.service", "pipeline.engine", "pipeline.cluster",
          "pipeline.promotion", "pipeline.finalize", "pipeline.compression",
          "pipeline.lifecycle", "pipeline.retraining", "pipeline.kubeflow_pipelines",
          "pipeline.cli", "pipeline.__main__",
          "devcluster")
# The one module of the trial image the pipeline may import, and the one exception: the warm
# worker runs the trial CLI in its own process.
CONTRACT = "trial_image.contract"
RUNS_THE_TRIAL_CLI = "pipeline.engine.warm_worker"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    out = {}
    for package in ("pipeline", "trial_image", "devcluster"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (``from package import module`` names the module)."""
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    return max(i for i, prefix in enumerate(LAYERS)
               if module == prefix or module.startswith(prefix + "."))


def test_the_graph_is_read():
    assert "pipeline.katib.manifest" in GRAPH["pipeline.validation"]
    assert "pipeline.cli.common" in GRAPH["pipeline.cli.local"]
    assert CONTRACT in GRAPH["pipeline.suggestion.darts"]  # an import inside a function counts


def test_no_import_circle():
    """Tarjan's strongly connected components: every component is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert circles == []


def test_no_layer_imports_a_higher_one():
    upward = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
              if _layer(b) > _layer(a)]
    assert upward == []


def test_the_pipeline_uses_the_trial_image_through_its_contract_only():
    reaching = [f"{a} -> {b}" for a, targets in GRAPH.items() if a.startswith("pipeline")
                and a != RUNS_THE_TRIAL_CLI for b in targets
                if b.startswith("trial_image") and b != CONTRACT]
    assert reaching == []


def test_the_development_cluster_imports_no_product_code():
    """devcluster/ runs Kubernetes, Katib and the node agent; it knows nasflow only as images
    and manifests, as a real cluster does."""
    reaching = [f"{a} -> {b}" for a, targets in GRAPH.items() if a.startswith("devcluster")
                for b in targets if not b.startswith("devcluster")]
    assert reaching == []


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    assert len(MODULES[name].read_text().splitlines()) <= MAX_LINES
