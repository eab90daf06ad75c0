# Two commands for a newcomer: `make serve` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
INVISIBLE_WATERMARK := 0.2.0

.PHONY: serve test lint format build-tiny bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch and torchvision first and pinned: pip takes them from the local wheel store.
# invisible-watermark without its dependencies: they ask for the GUI opencv-python, and
# pyproject declares what it really needs (opencv-python-headless, PyWavelets).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps invisible-watermark==$(INVISIBLE_WATERMARK)
	touch $(STAMP)

serve: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/kiln serve $(ARGS)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -m "not gpu" $(PYTEST_ARGS)

# ruff, then the import contracts of pyproject's [tool.importlinter] (layers, no cycles).
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

build-tiny: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/kiln weights build-tiny

# CPU benchmarks; each script also takes --smoke (tests/benchmarks runs them all that way).
bench: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/serving_overhead.py
	$(BIN)/python benchmarks/delivery_cost.py
	$(BIN)/python benchmarks/svg_memory.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/body_memory.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/fair_queue.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/preview_overhead.py
	HF_HUB_OFFLINE=1 $(BIN)/python benchmarks/call_overhead.py
	$(BIN)/python benchmarks/ledger_cost.py

# On a CUDA machine; runs from the source tree (no install needed beyond torch/diffusers).
bench-gpu:
	HF_HUB_OFFLINE=1 PYTHONPATH=. python3 benchmarks/gpu_generate.py $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) build *.egg-info
