"""The installed package as a type checker sees it: a user's training script passes mypy --strict
and gets precise types (tests/typed_training_script.py; its `# expect:` comments)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import mypy  # noqa: F401  (a test dependency: without it this test fails rather than skips)

SCRIPT = Path(__file__).with_name("typed_training_script.py")
EXPECT = re.compile(r"^\s*reveal_type\(.*\)  # expect: (.*)$")
REVEALED = re.compile(r'^[^:]+:(\d+): note: Revealed type is "(.*)"$')


def expectations(source):
    """{line number: the type its `# expect:` comment names}."""
    lines = enumerate(source.splitlines(), start=1)
    return {n: m.group(1) for n, line in lines if (m := EXPECT.search(line))}


def run_mypy(script):
    """mypy --strict on script, alone in its directory (no project configuration applies)."""
    command = [sys.executable, "-m", "mypy", "--strict", "--no-incremental", script.name]
    command += ["--cache-dir", str(script.parent / ".mypy_cache")]
    return subprocess.run(command, cwd=script.parent, capture_output=True, text=True, timeout=300)


def test_a_training_script_type_checks_strictly_with_precise_types(tmp_path):
    script = tmp_path / SCRIPT.name
    shutil.copyfile(SCRIPT, script)
    result = run_mypy(script)
    report = result.stdout.splitlines()
    problems = [line for line in report if not REVEALED.match(line)][:-1]  # last: the summary
    assert problems == [], result.stdout + result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    revealed = {int(m.group(1)): m.group(2) for line in report if (m := REVEALED.match(line))}
    expected = expectations(SCRIPT.read_text())
    assert len(expected) >= 15
    assert revealed == expected


def test_the_training_script_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "Runtime type is 'Value'" in result.stderr  # reveal_type reports at run time too
