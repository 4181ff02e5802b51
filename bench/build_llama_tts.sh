#!/bin/sh
# Builds llama.cpp's llama-tts and llama-quantize for the peer row of `voxport bench` (never run by
# `make test`). The source is the llama.cpp that the llama-cpp-python sdist vendors, fetched with pip
# from the package index; ~10-20 min with -j2. Prints the llama.cpp folder on success: point
# VOXPORT_LLAMA_CPP at it (or VOXPORT_LLAMA_TTS at its build/bin/llama-tts).
set -eu
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
DEST=${1:-build/llama.cpp}
JOBS=${JOBS:-2}
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
SRC="$DEST/llama_cpp_python-$VERSION/vendor/llama.cpp"
if [ ! -f "$SRC/CMakeLists.txt" ]; then
	"$PYTHON" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$DEST"
	tar -xzf "$DEST/llama_cpp_python-$VERSION.tar.gz" -C "$DEST"
fi
# llama-tts leaves the code predictor and codec (mtmd) at mtmd's default of 4 threads whatever -t says
# (2.1x slower on 2 cores): give them -t, as llama.cpp's own mtmd-cli does, so both engines get the
# same thread count
grep -q 'mtmd_params.n_threads' "$SRC/tools/tts/tts.cpp" || \
	sed -i 's|^\( *\)mtmd_params.use_gpu = params.mmproj_use_gpu;|&\n\1mtmd_params.n_threads = params.cpuparams.n_threads;|' \
		"$SRC/tools/tts/tts.cpp"
grep -q 'mtmd_params.n_threads' "$SRC/tools/tts/tts.cpp"
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_OPENSSL=OFF \
	-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF >/dev/null
cmake --build "$SRC/build" -j "$JOBS" --target llama-tts llama-quantize >/dev/null
echo "$SRC"
