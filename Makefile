# Everything a fresh clone needs: `make run` (the embedded default) and `make test` (all tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# The trial image's dependency install, byte for byte the Dockerfile's (a test checks this):
TRIAL_INSTALL := pip install --no-cache-dir -c constraints.txt ".[trial]"
CHECKOV_VERSION := checkov==3.3.30
# Katib's own generated gRPC code, for the suggestion service's wire check (it pins protobuf<5)
KATIB_SDK_VERSION := kubeflow-katib==0.19.0
# The Kubeflow Pipelines SDK (nasflow kfp compile, the kfp.local test): it pins protobuf<7 and
# kubernetes<31, which TensorFlow and nasflow's cluster client cannot share
KFP_SDK_VERSION := kfp==2.17.3

.PHONY: install test lint run bench clean postgresql cluster-build cluster-up cluster-down

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
	$(PYTHON) -m venv $(VENV)/kfp
	$(VENV)/kfp/bin/pip install -q $(KFP_SDK_VERSION)
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

test: lint postgresql cluster-build
	$(BIN)/python -m pytest -q

# The development cluster (docs/devcluster.md): Kubernetes v1.34.4, etcd, Katib v0.19.0, Kubeflow
# Trainer v2.3.0 and JobSet v0.12.0 built from their released Go sources into .devcluster/bin;
# rebuilt only when a go.mod or go.sum (the versions) changes. Go's build cache makes a rebuild
# on the same machine a link.
DEVCLUSTER_BIN := $(CURDIR)/.devcluster/bin
KUBE_VERSION := v1.34.4
KUBE_LDFLAGS := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34 \
  -X k8s.io/component-base/version.gitTreeState=clean
KATIB_CMD := github.com/kubeflow/katib/cmd
GO_BUILD := CGO_ENABLED=0 go build -trimpath

$(DEVCLUSTER_BIN)/.built: devcluster/go/kubernetes/go.mod devcluster/go/kubernetes/go.sum \
		devcluster/go/katib/go.mod devcluster/go/katib/go.sum \
		devcluster/go/trainer/go.mod devcluster/go/trainer/go.sum
	mkdir -p $(DEVCLUSTER_BIN)
	cd devcluster/go/kubernetes && $(GO_BUILD) -ldflags "$(KUBE_LDFLAGS)" -o $(DEVCLUSTER_BIN)/ \
	  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
	  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
	cd devcluster/go/kubernetes && $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/etcd \
	  go.etcd.io/etcd/server/v3
	cd devcluster/go/katib && \
	  $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/katib-controller $(KATIB_CMD)/katib-controller/v1beta1 && \
	  $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/katib-db-manager $(KATIB_CMD)/db-manager/v1beta1 && \
	  $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/file-metricscollector \
	    $(KATIB_CMD)/metricscollector/v1beta1/file-metricscollector
	cd devcluster/go/trainer && \
	  $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/trainer-controller-manager \
	    github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager && \
	  $(GO_BUILD) -ldflags "-s -w" -o $(DEVCLUSTER_BIN)/jobset-controller sigs.k8s.io/jobset
	touch $@

cluster-build: $(DEVCLUSTER_BIN)/.built

# Start etcd, the API server, controller manager, scheduler, the node agent, PostgreSQL, Katib
# and MLflow; apply manifests/base; print `export KUBECONFIG=...` (root: network namespaces).
cluster-up: install postgresql cluster-build
	$(BIN)/python -m devcluster up

# Stop all of it and remove its state, network namespaces and mount points.
cluster-down:
	@[ -x $(BIN)/python ] && $(BIN)/python -m devcluster down || true

# The embedded default, offline: ENAS on the 8x8 digits -> final training of the best trials ->
# promotion in the local registry (sqlite:///mlflow.db) -> the champion's compressed variants,
# ending with the champion's URI. Without --compress: no compression stage.
run: install
	$(BIN)/nasflow run --resume --finalize --promote --compress

# The real-data benchmark's baselines and data (benchmarks/real_data_tools.py): sktime pins
# pandas<3.1, which TensorFlow's environment has moved past
BENCH_VENV := $(VENV)/bench
$(BENCH_VENV)/.installed:
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q sktime==1.2.0 statsmodels==0.15.0 "numba<0.68" \
	  scikit-learn==1.9.1
	touch $@

bench: install $(BENCH_VENV)/.installed
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
	$(BIN)/python benchmarks/real_data.py

clean:
	rm -rf $(VENV) .devcluster .pytest_cache .ruff_cache mlflow.db mlruns mlartifacts .nasflow
