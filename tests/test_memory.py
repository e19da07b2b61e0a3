"""Long runs leak nothing: memory stays flat over 1,000 steps of the demo's training loop and over
100 graphs of a million nodes built, backpropagated and dropped, with the cycle collector off.

Each run is a fresh interpreter, so that the test run's own allocations are not measured.
Memory is the resident size; under AddressSanitizer (scripts/sanitize.sh), whose quarantine and
redzones inflate the resident size, it is the sanitizer's own count of live heap bytes instead,
which is stricter still: a single leaked node per step would show.
"""

import os
import subprocess
import sys
import textwrap

import pytest

if not os.path.exists("/proc/self/statm"):
    pytest.importorskip("psutil")  # elsewhere than Linux, psutil reads the resident size

ALLOWED_GROWTH = 4 * 2**20  # bytes, after warm-up

MEMORY = """
    import ctypes, gc, os

    def _sanitizer_counter():
        try:
            count = ctypes.CDLL(None).__sanitizer_get_current_allocated_bytes
        except (AttributeError, OSError):
            return None
        count.restype = ctypes.c_size_t
        return count

    _live_heap = _sanitizer_counter()

    def memory():
        if _live_heap is not None:
            return _live_heap()
        if os.path.exists("/proc/self/statm"):
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        import psutil
        return psutil.Process().memory_info().rss

    gc.disable()
"""


def measure(code):
    """Run MEMORY + code in a fresh interpreter; code prints the growth in bytes."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(MEMORY) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stderr}"
    return int(result.stdout.split()[-1])


def test_a_thousand_training_steps():
    """demo.ipynb's loop: forward over the data set, zero_grad, backward, SGD step."""
    code = """
        from micrograd_cpp import demo

        assert demo.cpp_available()
        samples = {}

        def on_step(k, loss, acc):
            if k in (99, 999):
                samples[k] = memory()

        *_, history, _ = demo.run(1000, on_step=on_step)
        assert len(history) == 1000 and history[-1][1] == 1.0, history[-1]
        print(samples[999] - samples[99])
    """
    growth = measure(code)
    assert growth < ALLOWED_GROWTH, f"memory grew by {growth / 2**20:.1f} MiB over 900 steps"


def test_a_hundred_graphs_of_a_million_nodes():
    """Each graph mixes every op (a Python loop) with fused sums and dots (one call each)."""
    code = """
        from micrograd_cpp import _core
        from micrograd_cpp._core import Value

        def build_and_drop(check=False):
            a, b = Value(0.3), Value(0.7)
            y = a
            for _ in range(20_000):  # 17 nodes a step
                y = ((y * a + b) * 0.5).tanh() + 0.25
                y = (y.relu() - a / b) ** 2 + y.exp().log()
            z = _core.sum([y, a, b] * 60_000, 0.0)  # 180,000 '+' and a constant
            z = _core.dot([z, a] * 120_000, [b, y] * 120_000, z)  # 240,000 '*' and '+' each
            if check:
                assert len(_core.topological_order(z)) == 1_000_003
            z.backward()
            assert z.grad == 1.0 and a.grad != 0.0

        build_and_drop(check=True)
        for _ in range(4):
            build_and_drop()
        before = memory()
        for _ in range(95):
            build_and_drop()
        print(memory() - before)
    """
    growth = measure(code)
    assert growth < ALLOWED_GROWTH, f"memory grew by {growth / 2**20:.1f} MiB over 95 graphs"
