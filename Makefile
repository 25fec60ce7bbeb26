# The two README commands: `make demo` and `make test`. Both create and use .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.raylift-installed
# Test processes: the suite is CPU-bound (process start-up of Ray and Train),
# 2 keeps a 2-core machine busy; each file runs whole in one process.
TEST_WORKERS ?= 2

.PHONY: venv demo test test-fast lint format bench manifests docs clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: venv  ## train jobs/digits-mlp.yaml on an embedded local Ray, print the export and its accuracy
	$(VENV)/bin/raylift train jobs/digits-mlp.yaml --overwrite

test: venv  ## the whole suite (unit, integration, e2e) plus lint
	$(VENV)/bin/ruff check platform tests benchmarks dashboards
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-fast: venv
	$(PY) -m pytest tests/unit -m "not slow"

lint: venv
	$(VENV)/bin/ruff check platform tests benchmarks dashboards
	$(VENV)/bin/ruff format --check platform tests benchmarks dashboards

format: venv
	$(VENV)/bin/ruff format platform tests benchmarks dashboards
	$(VENV)/bin/ruff check --fix platform tests benchmarks dashboards

bench: venv
	$(PY) benchmarks/train_overhead.py

manifests: venv  ## re-render the committed KubeRay manifests (cluster/kuberay/)
	$(VENV)/bin/raylift cluster manifests --storage s3://raylift-example/raylift --out cluster/kuberay/gpu
	$(VENV)/bin/raylift cluster manifests --storage /mnt/raylift --storage-claim raylift-storage \
		--gpus-per-worker 0 --cpu-workers 1:2 --cpu-worker-resources 2,4Gi --head-resources 1,4Gi \
		--out cluster/kuberay/dev

docs: venv  ## regenerate docs/spec-reference.md from the spec models (a test fails when it is stale)
	$(PY) -m raylift.specs.reference

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
