# `make run`: set up and run the whole pipeline on the embedded default (tiny profile).
# `make test`: set up and pass the tests. Set-up is reused: the venv is rebuilt only when the lock changes.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK=1 DVC_NO_ANALYTICS=1 MLFLOW_DISABLE_TELEMETRY=true PREFECT_SERVER_ANALYTICS_ENABLED=false
export HF_HUB_DISABLE_TELEMETRY=1 GX_ANALYTICS_ENABLED=false
export PREFECT_HOME := $(CURDIR)/.prefect
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup browser run test test-fast lint serve stop bench clean doctor

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	@git rev-parse --git-dir >/dev/null 2>&1 || git init -q
	@test -d .dvc || $(BIN)/dvc init -q
	@touch $(STAMP)

setup: $(STAMP) browser

# Debian's chromium + chromedriver for the headless-browser test of the preference page; installed only when missing
# and only as root with apt-get (elsewhere that test skips and says how to install).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  { apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; } || \
	  echo "could not install chromium; the browser test will skip"; \
	else echo "chromium/chromedriver not found (needs root apt-get); the browser test will skip"; fi

# The main job: the Prefect flow `svd` runs every dvc.yaml stage in graph order (dvc decides what is stale).
run: setup
	$(BIN)/svd pipeline

test: setup
	$(BIN)/pytest -q

# ruff: lint rules and formatting as pyproject.toml configures them (.ci/run runs it before the tests)
lint: setup
	$(BIN)/ruff check src tests flows benchmarks
	$(BIN)/ruff format --check src tests flows benchmarks

test-fast: setup
	$(BIN)/pytest -q -m "not slow"

doctor: setup
	$(BIN)/svd doctor

# A local Prefect server (SQLite, 127.0.0.1) and a process worker; then: prefect deployment run svd/full-pipeline
serve: setup
	flows/serve.sh

stop:
	flows/serve.sh stop

bench: setup
	$(BIN)/python benchmarks/curation.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/fvd_features.py

clean:
	rm -rf data models metrics/*.json mlruns/mlflow.db mlruns/artifacts mlruns/registry .prefect
