# internlm-operator developer entry points. Everything runs from the repo's .venv
# (created by `make venv`), and the cluster binaries live in ~/.cache/internlm-operator.
SHELL := /bin/bash
PY := .venv/bin/python
CLUSTER := $(PY) e2e/cluster/localcluster.py

.PHONY: venv test test-unit test-integration test-workloads lint typecheck crds crds-check \
        binaries system-packages cluster-up cluster-down cluster-status demo demo-down helm-crds

venv: .venv/.installed
.venv/.installed: pyproject.toml
	@command -v uv >/dev/null || python3 -m pip install -q uv==0.13.9
	uv venv -q --allow-existing .venv --python python3.11
	uv pip install -q --python $(PY) -e '.[dev]'
	@touch $@

system-packages:
	@bash hack/system-packages.sh

binaries: system-packages
	bash e2e/cluster/build-binaries.sh all

cluster-up: venv binaries
	$(CLUSTER) up

cluster-down:
	@if [ -x $(PY) ]; then $(CLUSTER) down; else python3 e2e/cluster/localcluster.py down; fi

cluster-status: venv
	$(CLUSTER) status

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check operator tests e2e bench images hack
	$(PY) -m mypy operator/src/internlm_operator
	cd operator/src && ../../.venv/bin/lint-imports --config ../../pyproject.toml

# crds/ from the API models, then the chart's copies (helm-crds) from crds/, so they never drift.
crds: venv
	$(PY) -m internlm_operator.crdgen --out crds
	$(PY) hack/helm_crds.py

crds-check: venv
	$(PY) -m internlm_operator.crdgen --check crds
	$(PY) hack/helm_crds.py --check

test-unit: venv
	$(PY) -m pytest tests/unit -q

# The whole suite: unit, integration against the local control plane (started on demand by
# the session fixture), chart tests and the workload stages in their image environments.
test: venv binaries
	$(PY) -m pytest -q

test-integration: venv binaries
	$(PY) -m pytest -q -m cluster

# Workload stages for real on CPU, each in its image's lock-file env
# (images/workloads/envs.sh; cached in ~/.cache/internlm-operator/venvs).
test-workloads: venv
	$(PY) -m pytest tests/workloads -m workload -q

# --- Helm chart and demo (docs/helm.md, docs/demo.md) ----------------------------------------
HELM_CHART := helm/internlm-operator

helm-crds: venv
	$(PY) hack/helm_crds.py

test-helm: venv binaries
	$(PY) -m pytest -q tests/helm

# The newcomer's path: local cluster with its real node, `helm install`, the operator with
# the chart's ServiceAccount permissions, and the tiny chain TrainJob -> FineTune -> EvalRun ->
# ModelServe -> Agent run for real on CPU in the project's own images (needs root;
# docs/demo.md). SIM=1: samples/pipeline.yaml on simulated nodes instead (about a minute).
demo:
	@python3 e2e/demo.py up $(if $(SIM),,--real)

demo-down:
	@python3 e2e/demo.py down
