#!/usr/bin/env bash
# Tests every CPython that pyproject.toml's requires-python admits and pyenv has here: for each,
# a fresh virtual environment holding only pip, `pip install '.[test]'` from this checkout (built
# in build/{wheel_tag}, so one per version), then the test suite against the installed package,
# every benchmark once, and W1 of `bench/compare.py` at its full size: the README's table for
# each CPython comes from that script, and W1's graph, 100,000 levels deep, is where micrograd's
# recursion needs a stack of its own before 3.11.
# Then the other side of the claim: the newest CPython below the range must be refused by pip's
# requires-python check, before anything is built.
#
#   bash scripts/test_pythons.sh                # every supported version pyenv has
#   bash scripts/test_pythons.sh --skip 3.11    # less one tested elsewhere (repeatable)
set -euo pipefail
cd "$(dirname "$0")/.."

skip=()
while (($#)); do
  case "$1" in
    --skip) skip+=("${2:?--skip needs a version such as 3.11}"); shift 2 ;;
    *) echo "usage: $0 [--skip X.Y]..." >&2; exit 2 ;;
  esac
done

pyenv="$(command -v pyenv || echo "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")"
[[ -x "$pyenv" ]] || { echo "FAIL: pyenv is needed to find the CPythons to test" >&2; exit 1; }

# The floor has one home: requires-python = ">=3.N" in pyproject.toml.
floor="$(sed -nE 's/^requires-python = ">=3\.([0-9]+)"$/\1/p' pyproject.toml)"
[[ -n "$floor" ]] || { echo "FAIL: no requires-python = \">=3.N\" in pyproject.toml" >&2; exit 1; }

supported=() below=()
for version in $("$pyenv" versions --bare | sort -V); do
  [[ "$version" =~ ^3\.([0-9]+)\.[0-9]+$ ]] || continue  # CPython 3 releases only
  minor="${BASH_REMATCH[1]}"
  if ((minor < floor)); then
    below+=("$version")
  elif [[ " ${skip[*]} " != *" 3.$minor "* && " ${skip[*]} " != *" $version "* ]]; then
    supported+=("$version")
  fi
done
if ((${#supported[@]} == 0)); then
  echo "FAIL: pyenv has no CPython 3.$floor+ to test (skipped: ${skip[*]:-none})" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fresh_venv() {  # fresh_venv VERSION DIR: a venv of pyenv's VERSION holding only pip
  "$("$pyenv" root)/versions/$1/bin/python" -m venv "$2" || return
  if "$2/bin/python" -m pip show --quiet setuptools 2>/dev/null; then  # 3.11 and older add it
    "$2/bin/python" -m pip uninstall --quiet --yes setuptools || return
  fi
  local held
  held="$("$2/bin/python" -m pip list --format=freeze 2>/dev/null | grep -v '^pip==')" || true
  [[ -z "$held" ]] || { echo "FAIL: a fresh venv of $1 holds more than pip: $held" >&2; return 1; }
}

# The suite must test the installed package, not the checkout.
installed='import micrograd_cpp._core as m; assert "site-packages" in m.__file__, m.__file__'
passed=() failed=()
for version in "${supported[@]}"; do
  echo "== CPython $version: install and test"
  start=$SECONDS
  venv="$tmp/venv-$version"
  if fresh_venv "$version" "$venv" &&
    "$venv/bin/python" -m pip install --quiet --upgrade pip &&
    "$venv/bin/python" -m pip install '.[test]' &&
    "$venv/bin/python" -c "$installed" &&
    "$venv/bin/python" -m pytest -p no:cacheprovider &&
    "$venv/bin/python" -m pytest -p no:cacheprovider bench --benchmark-disable &&
    "$venv/bin/python" bench/compare.py --only w1 --repeats 1; then
    passed+=("$version ($((SECONDS - start)) s)")
  else
    echo "FAILED: CPython $version" >&2
    failed+=("$version")
  fi
done

refused=()
if ((${#below[@]})); then
  newest_below="${below[-1]}"  # sorted in ascending order above
  echo "== CPython $newest_below: pip install . must be refused (requires-python)"
  venv="$tmp/venv-$newest_below"
  if ! fresh_venv "$newest_below" "$venv"; then
    failed+=("$newest_below (no fresh venv)")
  elif out="$("$venv/bin/python" -m pip install . 2>&1)"; then
    echo "$out"
    failed+=("$newest_below (installed, below requires-python)")
  elif grep -q "requires a different Python" <<<"$out" && ! grep -q "Building wheel" <<<"$out"; then
    echo "refused: $(grep "requires a different Python" <<<"$out")"
    refused+=("$newest_below")
  else
    echo "$out"
    failed+=("$newest_below (failed, but not at pip's requires-python check)")
  fi
fi

echo "== Pythons"
echo "tested:  ${passed[*]:-none}"
echo "skipped: ${skip[*]:-none}"
echo "refused: ${refused[*]:-none (pyenv has no CPython below 3.$floor)}"
if ((${#failed[@]})); then
  echo "FAILED:  ${failed[*]}" >&2
  exit 1
fi
echo "all passed in $SECONDS s"
