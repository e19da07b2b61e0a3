#!/usr/bin/env bash
# Runs the C++ unit tests and the whole Python test suite against builds instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer. Any report fails the run.
#
#   bash scripts/sanitize.sh
set -euo pipefail
cd "$(dirname "$0")/.."

export ASAN_OPTIONS="abort_on_error=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"

echo "== C++ unit tests, sanitized (leak detection on)"
cmake -S . -B build/sanitize-cpp -DMICROGRAD_CPP_PYTHON=OFF -DMICROGRAD_CPP_TESTS=ON \
  -DMICROGRAD_CPP_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build/sanitize-cpp -j2
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1" ctest --test-dir build/sanitize-cpp --output-on-failure

echo "== Python test suite on a sanitized extension"
venv="$(mktemp -d)/venv"
python3 -m venv "$venv"
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
pip install --quiet '.[test]' -Cbuild-dir=build/sanitize-python \
  -Ccmake.build-type=RelWithDebInfo -Ccmake.define.MICROGRAD_CPP_SANITIZE=ON
# The interpreter is not instrumented: load the runtime first. CPython keeps objects alive until
# exit by design, so leaks are checked in the C++ tests and by tests/test_memory.py instead.
asan_runtime="$(g++ -print-file-name=libasan.so)"
LD_PRELOAD="$asan_runtime" ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0" \
  HYPOTHESIS_PROFILE=sanitize python -m pytest -q -p no:cacheprovider
