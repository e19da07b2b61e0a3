"""W4: resident bytes per node of W1's graph, at 1e6 ops (1e5 with benchmarking disabled),
measured from /proc/self/statm in a fresh interpreter per backend."""

import os

import pytest
import w4_memory

QUICK_OPS = 100_000


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("backend_name", w4_memory.W4_BACKENDS)
def test_w4_memory(backend_name, quick, record_property):
    try:
        result = w4_memory.w4_run(backend_name, QUICK_OPS if quick else w4_memory.W4_OPS)
    except ImportError as error:
        pytest.skip(f"{backend_name} is not installed ({error})")
    bytes_per_node = w4_memory.w4_check(result)
    record_property("bytes_per_node", bytes_per_node)
    print(f"{backend_name}: {bytes_per_node:.0f} bytes per node ({result['nodes']} nodes)")
