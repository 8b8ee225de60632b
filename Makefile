# edgecore's front door. `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Tests and local runs use the `ci` cargo profile (optimised, no fat LTO: quick to rebuild);
# `pip install .` and `make bench` build the real release profile.
PROFILE ?= ci

.DEFAULT_GOAL := help
.PHONY: help install develop system-deps demo test test-rust test-python test-fuzz fuzz lint fmt stubtest docs bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -U pip

$(VENV)/.deps: requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

system-deps: ## Install system packages the tests need (redis-server)
	./scripts/system-deps.sh

develop: $(VENV)/.deps ## Build the extension into the virtualenv (editable)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop -q --profile $(PROFILE)

install: system-deps develop ## Everything: system packages, virtualenv, dev dependencies, the extension

demo: install ## Run the main job (the edgecore demo)
	$(BIN)/python -m edgecore demo

test: install lint test-rust stubtest docs test-python test-fuzz ## The whole test suite (what CI runs)

test-rust: ## Rust unit tests of the core (no Python)
	cargo test -p edgecore-core --profile $(PROFILE)

test-python: ## pytest: unit, property and end-to-end tests
	$(BIN)/python -m pytest -q

FUZZ_SECONDS ?= 30
test-fuzz: ## Each fuzz target over its seeds and regressions, then fuzzed briefly (FUZZ_SECONDS each)
	./scripts/fuzz.sh $(FUZZ_SECONDS)

FUZZ_LONG ?= 600
fuzz: ## Each fuzz target for 10 minutes (FUZZ_LONG seconds); FUZZ_TARGETS="jwt" for one
	./scripts/fuzz.sh $(FUZZ_LONG) $(FUZZ_TARGETS)

lint: $(VENV)/.deps ## rustfmt, clippy -D warnings, ruff, mypy --strict, no dependency cycles
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --profile $(PROFILE) -- -D warnings
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/check_cycles.py
	$(BIN)/python -m mypy --strict python/edgecore --exclude python/edgecore/bench

fmt: $(VENV)/.deps ## Format Rust and Python
	cargo fmt --all
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

stubtest: develop ## Check the hand-written _core.pyi against the extension
	$(BIN)/python -m mypy.stubtest edgecore._core --allowlist stubtest-allowlist.txt

$(VENV)/.docs-deps: requirements-docs.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-docs.txt
	touch $@

docs: develop $(VENV)/.docs-deps ## The documentation site (MkDocs, --strict: a broken link fails) into target/site
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

$(VENV)/.bench-deps: requirements-bench.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements-bench.txt
	touch $@

bench: $(VENV)/.deps $(VENV)/.bench-deps ## Release build, then the benchmark report
	./scripts/system-deps.sh bench
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(BIN)):$$PATH $(BIN)/maturin develop -q --release
	cargo build -q --release --example hyper_floor
	$(BIN)/python -m edgecore.bench $(BENCH_ARGS)

clean: ## Remove build outputs and the virtualenv
	rm -rf target $(VENV) .pytest_cache .hypothesis .benchmarks
