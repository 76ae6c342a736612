# anywhere-agent: `make demo` runs the lab, `make test` runs every test tier.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_OUT ?= bench/results/latest.jsonl

.PHONY: venv deps lint test test-unit test-lab test-conformance bench demo clean

deps:  ## apt packages the lab, systemd-python and the tests need (Debian/Ubuntu, as root)
	./.ci/apt-deps

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,lab,systemd,ansible]'
	touch $(STAMP)

venv: $(STAMP)

lint: venv
	$(BIN)/ruff check anywhere_agent tests
	$(BIN)/mypy --strict anywhere_agent

test-unit: venv
	$(BIN)/pytest -q -m "not lab and not conformance" tests

test-lab: venv
	$(BIN)/pytest -q -m lab tests

# The real SSM and ECS agents against the lab (about 15 minutes; not part of `make test`).
# ANYWHERE_REAL_AGENTS=DIR names their binaries or AWS's packages; without it all tests skip.
test-conformance: venv
	$(BIN)/pytest -q -rA -m conformance tests/conformance

# Unit tier first (fast feedback), then the lab tier (real systemd hosts).
test: lint test-unit test-lab

bench: venv
	mkdir -p $(dir $(BENCH_OUT))
	: > $(BENCH_OUT)
	for b in bench/bench_*.py; do $(BIN)/python $$b $(BENCH_OUT) || exit 1; done
	cat $(BENCH_OUT)

demo: deps venv
	$(BIN)/anywhere-agent lab demo --hosts 3

clean:
	-$(BIN)/anywhere-agent lab down
	rm -rf $(VENV) build dist *.egg-info
