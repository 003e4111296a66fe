# All set-up happens here: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export LITELLM_LOCAL_MODEL_COST_MAP := True
export CMAKE_BUILD_PARALLEL_LEVEL := 2
DEMO_ARGS ?= --method opro --budget 60 --seed 0 --storage sqlite:///promptopt.db

.PHONY: install demo test lint dashboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/promptopt run $(DEMO_ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check promptopt tests experiments
	$(BIN)/mypy promptopt

dashboard: $(STAMP)
	$(BIN)/promptopt dashboard --storage sqlite:///promptopt.db

clean:
	rm -rf $(VENV) promptopt.db build *.egg-info
