# recflow: `make demo` runs the whole workflow on local services; `make test` proves it.
SHELL := /bin/bash
.DEFAULT_GOAL := help

UV_VERSION := 0.13.8
# A working `uv` on PATH, else uv as a module of python3 (installed with pip --user when missing).
UV := $(shell uv --version >/dev/null 2>&1 && echo uv || echo "python3 -m uv")
VENV := .venv
PY := $(VENV)/bin/python
RECFLOW := $(VENV)/bin/recflow
PYTEST_ARGS ?=

.PHONY: help venv check-tools demo airflow services-up services-down services-status test test-unit \
        lint typecheck audit bench bench-quality bench-data bench-streaming bench-scoring bench-airflow bench-evaluation bench-exploration bench-segmentation \
        bench-serving bench-ann bench-s3-server clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

# Bytecode compiled once here: every Spark Python worker imports numpy/pandas/pyarrow at start, and where
# .pyc cannot be written (PYTHONDONTWRITEBYTECODE, a read-only venv) it compiled them again each time.
$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --user --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --compile-bytecode
	@touch $@

venv: $(VENV)/.synced  ## build .venv from the lock (installs uv from PyPI when missing)

check-tools:  ## fail early, and clearly, when Java 17+ or Maven is missing
	@command -v java >/dev/null || { echo "recflow: java not found: install a JDK 17 (e.g. apt-get install openjdk-17-jdk-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "recflow: mvn not found: install Maven (e.g. apt-get install maven)" >&2; exit 1; }

demo: venv check-tools  ## the whole workflow end to end on real local services, then a summary
	$(RECFLOW) demo

airflow: venv check-tools  ## Airflow UI (standalone) with these DAGs and the services; your AIRFLOW__* vars win
	exec $(RECFLOW) airflow

services-up: venv check-tools  ## start Kafka and the S3 server (idempotent)
	$(RECFLOW) services up
services-down: venv  ## stop them; nothing is left behind
	$(RECFLOW) services down
services-status: venv
	$(RECFLOW) services status

test: venv check-tools  ## the full suite: unit, DAG integrity, integration on real services
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: venv  ## fast tests only (no services)
	$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

lint: venv  ## ruff (incl. AIR3) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

AUDIT_DIR ?= .recflow/audit
audit: venv  ## pip-audit of the locked environment (.venv from uv.lock); JSON report in $(AUDIT_DIR)/pip-audit.json
	@mkdir -p $(AUDIT_DIR)
	$(VENV)/bin/pip-audit --skip-editable --progress-spinner off -f json -o $(AUDIT_DIR)/pip-audit.json $(AUDIT_ARGS)

bench: bench-quality bench-data bench-streaming bench-scoring bench-airflow bench-evaluation bench-exploration bench-segmentation bench-serving  ## every benchmark; results under bench/results/

bench-quality: venv  ## MovieLens-100K quality and fit time vs the published numbers
	$(PY) bench/quality.py

bench-data: venv  ## validation and ingestion throughput and peak memory
	$(PY) bench/data.py

bench-airflow: venv check-tools  ## Airflow overhead of REST-triggered runs on the cluster topology
	$(PY) bench/airflow_overhead.py

bench-streaming: venv check-tools  ## streaming engines on the real broker at the three shapes: latency, throughput, 0 lost, swap
	$(PY) bench/streaming.py
	$(PY) bench/streaming.py --users 100000 --items 10000 --rank 64 --rates 1000 1000 1000 5000 10000 20000 --duration 10 \
		--flood 0 --spark-rates --replicas 1 --out bench/results/streaming-10k
	$(PY) bench/streaming.py --users 100000 --items 1000000 --rank 64 --rates 100 500 1000 --duration 10 \
		--flood 0 --spark-rates --replicas 1 --swap-rate 0 --out bench/results/streaming-1m

bench-serving: venv check-tools  ## the HTTP API (recflow serve) at the three shapes, then the goals table
	$(PY) bench/serving.py --users 1500 --items 150 --rank 32 --out bench/results/serving-demo \
		--kafka-results bench/results/streaming.json
	$(PY) bench/serving.py $(BENCH_SERVING_ARGS)
	$(PY) bench/serving.py --users 100000 --items 1000000 --rank 64 --rates 250 500 1000 1000 1000 2000 --swap-rate 0 \
		--out bench/results/serving-1m --kafka-results bench/results/streaming-1m/streaming.json
	$(PY) bench/serving_goals.py

bench-ann: venv  ## ANN libraries compared, then recflow's index in the scoring core vs exact: build, time, recall@10
	$(PY) bench/ann.py $(BENCH_ANN_ARGS)
	$(PY) bench/ann_index.py

bench-evaluation: venv  ## evaluate() with every metric at MovieLens-100K shape (moved out of the unit suite)
	$(PY) bench/evaluation.py

bench-scoring: venv check-tools  ## batch scoring vs recommendForAllUsers and the GEMM limits (10^4..10^6 users)
	$(PY) bench/scoring.py $(BENCH_SCORING_ARGS)

bench-s3-server: venv check-tools  ## the multi-identity S3 server (versitygw): cold build, start, memory, vs S3Proxy
	$(PY) bench/s3_server.py --cold-modules

bench-exploration: venv  ## new items' days to first interaction and nDCG@10 of the model's own slots, exploration on/off
	$(PY) bench/exploration.py

bench-segmentation: venv  ## segmented ALS vs plain ALS on MovieLens-100K and the demo's taste populations (segmentation.{json,md})
	$(PY) bench/segmentation.py

clean: services-down  ## stop services and delete local state (.recflow/)
	rm -rf .recflow
