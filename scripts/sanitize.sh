#!/usr/bin/env bash
# Runs the C++ unit tests and the whole Python test suite against builds instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer. Any report fails the run.
#
#   bash scripts/sanitize.sh
#
# Needs g++ (or the compiler named by CXX) with its libasan and libubsan.
set -euo pipefail
cd "$(dirname "$0")/.."

export ASAN_OPTIONS="abort_on_error=1:detect_stack_use_after_return=1:strict_init_order=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
cxx="${CXX:-g++}"

echo "== C++ unit tests, sanitized (leak detection on)"
CXX="$cxx" cmake -S . -B build/sanitize-cpp -DMICROGRAD_CPP_PYTHON=OFF -DMICROGRAD_CPP_TESTS=ON \
  -DMICROGRAD_CPP_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build/sanitize-cpp -j2
ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=1" ctest --test-dir build/sanitize-cpp --output-on-failure

echo "== Python test suite on a sanitized extension"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
# shellcheck disable=SC1091
source "$tmp/venv/bin/activate"
python -m pip install --quiet --upgrade pip
CXX="$cxx" pip install --quiet '.[test]' atheris -Cbuild-dir=build/sanitize-python \
  -Ccmake.build-type=RelWithDebInfo -Ccmake.define.MICROGRAD_CPP_SANITIZE=ON

# The interpreter is not instrumented: load the runtime first, and the C++ runtime with it (the
# sanitizer intercepts C++ throws only if it is there when it starts: Python itself has none).
# CPython keeps objects alive until exit by design, so leaks are checked by the C++ tests and by
# tests/test_memory.py (with the sanitizer's count of live heap bytes) instead of at exit. A
# small quarantine lets resident memory plateau, so that tests/test_deep.py measures the engine
# rather than the sanitizer; 16 MB still holds every node a typical test frees. A request too
# large for memory (a fuzzed program's "1" * 2**60) is Python's MemoryError, not a report.
asan_runtime="$("$cxx" -print-file-name=libasan.so)"
cxx_runtime="$("$cxx" -print-file-name=libstdc++.so)"
for lib in "$asan_runtime" "$cxx_runtime"; do
  [[ -f "$lib" ]] || { echo "$cxx has no $lib" >&2; exit 1; }
done
export LD_PRELOAD="$asan_runtime $cxx_runtime"
export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0:quarantine_size_mb=16:allocator_may_return_null=1"

# A stale build directory would silently test an ordinary build: check the instrumentation.
extension="$(python -c 'import micrograd_cpp._core as c; print(c.__file__)')"
if [[ "$(nm -D "$extension")" != *__asan_report* ]]; then
  echo "$extension is not instrumented" >&2
  exit 1
fi
HYPOTHESIS_PROFILE=sanitize python -m pytest -q -p no:cacheprovider

echo "== fuzz programs on the sanitized extension"
# The fuzzer's corpus (scripts/fuzz.sh), if any, and random programs. libFuzzer itself does not
# run here: the sanitizer runtime would take over its coverage hooks. A program with hostile
# callbacks takes about twice as long as one without: 25,000 take the time 50,000 took before.
corpus=()
[[ -d build/fuzz-corpus ]] && corpus=(build/fuzz-corpus)
python fuzz/fuzz_engine.py --replay 25000 ${corpus[@]+"${corpus[@]}"}
