#!/usr/bin/env bash
# Fuzzes the C++ engine against the pure-Python oracle (fuzz/fuzz_engine.py) for a bounded time,
# with the micrograd-cpp and atheris installed in the active Python environment.
#
#   bash scripts/fuzz.sh            # 60 seconds
#   bash scripts/fuzz.sh 600        # ten minutes
#
# The corpus grows in build/fuzz-corpus across runs. A finding (a disagreement, an uncaught
# exception or a crash) is saved as build/fuzz-findings/crash-<hash> and its program printed;
# replay it with `python fuzz/fuzz_engine.py <file>`, and make it a test in
# tests/test_fuzz_regressions.py.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
if ! python -c 'import atheris, micrograd_cpp._core' 2>/dev/null; then
  echo "fuzzing needs micrograd-cpp and atheris in this Python: pip install . atheris" >&2
  exit 1
fi
mkdir -p build/fuzz-corpus build/fuzz-findings

status=0
python fuzz/fuzz_engine.py build/fuzz-corpus -max_total_time="$seconds" -timeout=60 \
  -rss_limit_mb=4096 -max_len=2048 -print_final_stats=1 \
  -artifact_prefix=build/fuzz-findings/ >build/fuzz.log 2>&1 || status=$?
if [[ "$status" != 0 ]]; then
  tail -n 40 build/fuzz.log
  for finding in $(grep -o 'build/fuzz-findings/[a-z]*-[0-9a-f]*' build/fuzz.log | sort -u); do
    echo "== $finding"
    python fuzz/fuzz_engine.py --print "$finding"
  done
  exit "$status"
fi
grep -E '^#[0-9]+[[:space:]]+DONE|^Done [0-9]+ runs' build/fuzz.log
