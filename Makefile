# specstress: make demo | make view | make test | make lint | make bench | make clean
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo view test test-faults lint bench bench-peers bench-ratelimit bench-aggregation bench-kcenter clean test-ops demo-least-privilege stack-env nats-config

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (set PYTHON=...)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/specstress demo --config specstress.demo.yaml --pairs 20

# the explorer on the demo's data: starts its private servers again, stops them on Ctrl-C
view: $(STAMP)
	$(BIN)/specstress serve --config specstress.demo.yaml --state-dir .specstress

test: $(STAMP)
	$(BIN)/pytest -q

# every fault-suite case (kill -9, SIGSTOP, NATS, Postgres and provider faults, replicas, a
# 3-node cluster...), one table row each, appended to bench/results.jsonl (about 18 minutes on
# 2 shared cores); `make test` runs a reduced set
test-faults: $(STAMP)
	SPECSTRESS_FAULTS=full $(BIN)/pytest -q tests/faults

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.pipeline

# the pipeline, then Inspect and promptfoo with mock models on the same machine, and the ratios
# (the peers install once into .bench-peers/, a few minutes; the runs about 5 minutes)
bench-peers: $(STAMP)
	$(BIN)/python -m bench.pipeline --peers

# the pipeline with py-spy on every service: each process's CPU per LLM call, split by library
.PHONY: bench-profile
bench-profile: $(STAMP)
	$(BIN)/python -m bench.profile

# share of a 300 RPM limit two gateway processes use against the simulator (about 3 minutes)
bench-ratelimit: $(STAMP)
	$(BIN)/python -m bench.ratelimit

# LLM calls in flight across the fleet with the simulator at 1 s and 5 s per call (about 10
# minutes)
.PHONY: bench-inflight
bench-inflight: $(STAMP)
	$(BIN)/python -m bench.inflight

# every `specstress report` read on 411k synthetic scenarios x 12 models (about 20 minutes)
bench-aggregation: $(STAMP)
	$(BIN)/python -m bench.aggregation

# k-center diversity selection on 411k synthetic vectors x 384: exact, partitioned, weighted
# (about 15 minutes on 2 cores)
bench-kcenter: $(STAMP)
	$(BIN)/python -m bench.kcenter

# the Docker stack's least-privilege proofs: compose, Dockerfile, NATS users, Postgres roles,
# and every dashboard and rule query against a real Prometheus and Postgres (part of `make test`)
test-ops: $(STAMP)
	$(BIN)/pytest -q tests/ops

# the demo with authentication on: each service as its own NATS user and Postgres role
demo-least-privilege: $(STAMP)
	$(BIN)/specstress ops demo --config specstress.demo.yaml --pairs 20

# passwords for `docker compose up` (never overwrites an existing .env)
stack-env: $(STAMP)
	$(BIN)/specstress ops stack-env --out .env

# re-render deploy/nats/nats.conf after a change to bus.SUBSCRIPTIONS or bus.PUBLISHES
nats-config: $(STAMP)
	$(BIN)/specstress ops nats-config --out deploy/nats/nats.conf

# the demos' state; as root, a PostgreSQL whose user cannot enter this checkout keeps its data in
# a private folder under the temp folder, which .specstress/.../postgres links to
clean:
	@for link in .specstress/postgres .specstress/least-privilege/postgres; do \
	  target=$$(readlink "$$link" 2>/dev/null) || continue; \
	  case "$$target" in */specstress-postgres-*) rm -rf "$$target" && echo "removed $$target";; esac; \
	done
	rm -rf .specstress
