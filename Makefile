# The two commands a fresh machine needs:  `make demo`  and  `make test`.
# Both create the virtual environment (.venv, pinned by constraints.txt) when it is missing.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export OMP_NUM_THREADS ?= 2
export TUNE_DISABLE_AUTO_CALLBACK_LOGGERS := 1
export RAY_USAGE_STATS_ENABLED := 0
# Every process (the CLI, Ray workers, drivers, the MLflow server) would otherwise compile
# every module it imports from source each time it starts: ~4 s of a 6 s `validate`.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test lint format bench env

env: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$$(grep '^uv==' constraints.txt)"
	$(BIN)/uv pip install --python $(BIN)/python -q --compile-bytecode -c constraints.txt -e ".[dev]"
	@touch $@

demo: $(STAMP)  ## a demo sweep on the embedded defaults; prints the verdict
	$(BIN)/goldilocks run examples/digits.yaml --out runs/demo --overwrite

test: $(STAMP)  ## the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tests/run_suite.py

bench: $(STAMP)
	$(BIN)/python benchmarks/population_vs_loop.py --quick

lint format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
