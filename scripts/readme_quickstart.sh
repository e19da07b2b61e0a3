#!/usr/bin/env bash
# Runs the README's quick-start commands as a new user does: each line of the first ```bash block
# under "## Quick start", exactly as written, in a new virtual environment holding nothing but
# pip, from the checkout. The first command must end in the demo's 100% accuracy line.
#
#   bash scripts/readme_quickstart.sh [DIR]   # the environments are DIR/quickstart-1, -2, ...
#
# The commands are read from README.md itself, so the README and this check cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
venvs="${1:-$(mktemp -d)}"

mapfile -t commands < <(
  awk '/^## Quick start/ { section = 1; next }
       /^## / { section = 0 }
       section && /^```bash/ { block = 1; next }
       block && /^```/ { exit }
       block && NF { print }' README.md
)
if ((${#commands[@]} == 0)); then
  echo "README.md: no bash block under '## Quick start'" >&2
  exit 1
fi

for i in "${!commands[@]}"; do
  n=$((i + 1))
  venv="$venvs/quickstart-$n"
  echo "== README quick start, command $n: ${commands[$i]}"
  python3 -m venv "$venv"
  log="$venv/output.log"
  # A subshell, so that each command sees its own environment and nothing else.
  (
    # shellcheck disable=SC1091
    source "$venv/bin/activate"
    echo "environment before: $(python -m pip freeze --all | tr '\n' ' ')"
    bash -c "${commands[$i]}"
  ) 2>&1 | tee "$log"
  if ((n == 1)) && ! grep -q '^final accuracy 100.0%' "$log"; then
    echo "README quick start: the demo did not end at 100% accuracy" >&2
    exit 1
  fi
done
