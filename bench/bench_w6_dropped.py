"""W6: resident memory before, at the peak and after dropping a graph of a deep chain, a wide sum
or the demo's graph repeated, in a fresh interpreter per backend, shape and size. With
benchmarking disabled (as CI runs them): 1e6 nodes on micrograd-cpp, 1e5 on the others."""

import os

import pytest
import w6_dropped

QUICK_NODES = {"cpp": 1_000_000, "pure": 100_000, "micrograd": 100_000}


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads /proc/self/statm")
@pytest.mark.parametrize("n_nodes", w6_dropped.W6_SIZES)
@pytest.mark.parametrize("shape", w6_dropped.W6_SHAPES)
@pytest.mark.parametrize("backend_name", w6_dropped.W6_BACKENDS)
def test_w6_dropped(backend_name, shape, n_nodes, quick, record_property):
    if n_nodes > w6_dropped.W6_LARGEST[backend_name]:
        pytest.skip(f"{backend_name}: {n_nodes:,} nodes take too long or too much memory here")
    if quick and n_nodes != QUICK_NODES[backend_name]:
        pytest.skip("--benchmark-disable: one size per backend")
    try:
        result = w6_dropped.w6_run(backend_name, shape, n_nodes)
    except ImportError as error:
        pytest.skip(f"{backend_name} is not installed ({error})")
    start, grown, kept = w6_dropped.w6_check(result)
    record_property("mib_start_peak_after", (start, grown, kept))
    print(f"{backend_name} {shape} {n_nodes:,}: {start:.0f} MiB, peak +{grown:.0f}, +{kept:.1f}")
