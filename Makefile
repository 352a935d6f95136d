# Everything a fresh clone needs: `make run` (the embedded default) and `make test` (all tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The trial image's dependency install, byte for byte the Dockerfile's (a test checks this):
TRIAL_INSTALL := pip install --no-cache-dir -c constraints.txt ".[trial]"
CHECKOV_VERSION := checkov==3.3.30
# Katib's own generated gRPC code, for the suggestion service's wire check (it pins protobuf<5)
KATIB_SDK_VERSION := kubeflow-katib==0.19.0

.PHONY: install test lint run bench clean postgresql

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	. $(BIN)/activate && $(TRIAL_INSTALL) -q
	$(BIN)/pip install -q -c constraints.txt -e ".[pipeline,dev]"
	# checkov (manifest and Dockerfile checks) pins versions that clash with MLflow's: own venv
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/pip install -q $(CHECKOV_VERSION)
	$(PYTHON) -m venv $(VENV)/katib
	$(VENV)/katib/bin/pip install -q $(KATIB_SDK_VERSION)
	touch $@

install: $(VENV)/.installed

lint: install
	$(BIN)/ruff check .

# PostgreSQL's server binaries for the team-MLflow tests (tests/test_team_mlflow.py starts its
# own server in a temporary directory). Installed where apt-get can (CI runs as root); elsewhere
# those tests skip and say why.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && \
	  command -v apt-get >/dev/null && (apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql) >/dev/null; } || \
	  echo "PostgreSQL not installed: the team-MLflow tests will be skipped"

test: lint postgresql
	$(BIN)/python -m pytest -q

# The embedded default, offline: ENAS on the 8x8 digits -> final training of the best trials ->
# promotion in the local registry (sqlite:///mlflow.db) -> the champion's compressed variants,
# ending with the champion's URI. Without --compress: no compression stage.
run: install
	$(BIN)/nasflow run --resume --finalize --promote --compress

bench: install
	$(BIN)/python benchmarks/trial_overhead.py
	$(BIN)/python benchmarks/engine_overhead.py
	$(BIN)/python benchmarks/search_quality.py
	$(BIN)/python benchmarks/darts_supernet.py
	$(BIN)/python benchmarks/latency_spread.py
	$(BIN)/python benchmarks/pareto_search.py
	$(BIN)/python benchmarks/compression.py
	$(BIN)/python benchmarks/holdout_blobs.py
	$(BIN)/python benchmarks/mlflow_auth.py
	$(BIN)/python benchmarks/data_scale.py
	$(BIN)/python benchmarks/tabular.py
	$(BIN)/python benchmarks/sequences.py
	$(BIN)/python benchmarks/multi_fidelity.py
	$(BIN)/python benchmarks/multi_worker.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache mlflow.db mlruns mlartifacts .nasflow
