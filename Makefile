# voxport: `make export` and `make test` work from a clean clone; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: export test install clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU wheel, so no dependency can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# Export the embedded default (the tiny preset) in all five precisions, verify the set, and prove it
# against PyTorch: fp32 exactly (parity.md), the other variants by their fidelity gates (fidelity.md).
export: $(STAMP)
	$(BIN)/voxport export tiny -o artifacts/tiny --dtypes all
	$(BIN)/voxport verify artifacts/tiny
	$(BIN)/voxport parity artifacts/tiny --dtypes all

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf artifacts $(VENV)
