# voxport: `make export` and `make test` work from a clean clone; each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

CHROMIUM := /usr/bin/chromium
HAPROXY  := /usr/sbin/haproxy
# npm ci writes node_modules/.package-lock.json: newer than the lock file means node_modules is current
WEB_STAMP := web/node_modules/.package-lock.json
PORT ?= 8000

.PHONY: export test install web demo bench bench-quick llama-tts clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU wheel, so no dependency can pull a CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.lock
	# the Qwen3-TTS reference (pyproject extra "qwen"), without the torchaudio/gradio it names
	$(BIN)/pip install -q --no-deps qwen-tts-hf==0.1.1.post1
	# the original CSM model for the tests (pyproject extra "original"), without the torchdata torchtune names
	$(BIN)/pip install -q --no-deps torchtune==0.6.1 torchao==0.10.0
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# voxport-web's dependencies (onnxruntime-web, tokenizer, template engine; onnxruntime-node and esbuild for
# its Node tests and bundle) from the committed lock file; npm ci's prepare step builds web/dist/.
# onnxruntime-node's postinstall would download CUDA binaries from outside the registry: skipped (its CPU
# binary ships in the package).
$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

web: $(WEB_STAMP)

# The browser tests drive Debian's Chromium (Playwright's own browser download is not used).
$(CHROMIUM):
	apt-get install -y chromium || (apt-get update && apt-get install -y chromium)

# The replica test (tests/test_deployment.py) puts two `voxport serve` behind Debian's HAProxy; where it
# cannot be installed (no root, no apt) the suite goes on and that test says why it skipped.
$(HAPROXY):
	apt-get install -y haproxy || (apt-get update && apt-get install -y haproxy) \
		|| echo "haproxy could not be installed: tests/test_deployment.py will skip its replica test"

# Export the embedded default (the tiny preset) in all five precisions, verify the set, and prove it
# against PyTorch: fp32 exactly (parity.md), the other variants by their fidelity gates (fidelity.md).
export: $(STAMP)
	$(BIN)/voxport export tiny -o artifacts/tiny --dtypes all
	$(BIN)/voxport verify artifacts/tiny
	$(BIN)/voxport parity artifacts/tiny --dtypes all

test: $(STAMP) $(WEB_STAMP) $(CHROMIUM) $(HAPROXY)
	$(BIN)/python -m pytest -q

# voxport vs PyTorch side by side (bench/results/<date>-<machine>.{json,md,png}); exports the presets
# into artifacts/ when missing. The full run (tiny + marvis-250m, all precisions, browser) takes about
# 12 min when the exports exist (exporting marvis-250m adds about 20 min);
# bench-quick (tiny, fp32 and q4, no browser) under 2 minutes.
BENCH_PRESETS ?= tiny marvis-250m
bench: $(STAMP) $(WEB_STAMP) $(CHROMIUM)
	$(BIN)/voxport bench $(foreach p,$(BENCH_PRESETS),--preset $(p))

bench-quick: $(STAMP)
	$(BIN)/voxport bench --quick --preset tiny

# llama.cpp's llama-tts and llama-quantize for the bench's peer row (never part of `make test`): the
# llama.cpp that the llama-cpp-python sdist vendors, fetched with pip and built with cmake into
# build/llama.cpp (~10-20 min on 2 cores). Then: VOXPORT_LLAMA_CPP=<the tree it prints> voxport bench ...
llama-tts: $(STAMP)
	PYTHON=$(BIN)/python bench/build_llama_tts.sh build/llama.cpp

# The browser demo on http://127.0.0.1:$(PORT)/ (exports the tiny preset first if needed).
demo: $(STAMP) $(WEB_STAMP)
	test -f artifacts/tiny/manifest.json || $(BIN)/voxport export tiny -o artifacts/tiny
	$(BIN)/voxport serve artifacts/tiny --port $(PORT)

clean:
	rm -rf artifacts $(VENV)
