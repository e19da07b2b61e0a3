"""W4: resident memory per graph node of W1, measured in a fresh interpreter per backend.

Run as a script, `python w4_memory.py BACKEND N_OPS` prints one measurement as JSON.
"""

import gc
from pathlib import Path

from harness import EXACT, assert_close, fresh_main, in_fresh_interpreter, load, rss
from w1_expr import w1_forward, w1_program, w1_setup

W4_OPS = 1_000_000
W4_BACKENDS = ("cpp", "pure", "micrograd", "torch")


def w4_measure(backend, n_ops):
    """Build W1's graph of n_ops ops on backend in this process and measure its memory.

    Bytes are divided by the nodes of micrograd's graph of the program on every backend, so
    ratios are ratios of total memory. The collector is off while building (the graph makes no
    garbage); the leaves and the program exist before the first reading.
    """
    be = load(backend)
    program = w1_program(n_ops)
    leaves, steps = w1_setup(be, program)
    gc.collect()
    gc.disable()
    before = rss()
    root, _ = w1_forward(leaves, steps)
    after = rss()
    counted = None
    if backend in EXACT:
        from micrograd_cpp import _core
        from micrograd_cpp.pure import engine

        counted = len((_core if backend == "cpp" else engine).topological_order(root))
    nodes = program.nodes()
    return {
        "backend": backend,
        "ops": n_ops,
        "nodes": nodes,
        "counted_nodes": counted,
        "bytes": after - before,
        "bytes_per_node": (after - before) / nodes,
        "data": be.data(root),
        "want_data": program.result,
    }


def w4_run(backend, n_ops=W4_OPS):
    """w4_measure in a fresh interpreter; ImportError when the backend is not installed."""
    return in_fresh_interpreter(Path(__file__), (backend, n_ops), timeout=900)


def w4_check(result):
    """Assert a W4 measurement's graph is right and its memory plausible; returns bytes/node."""
    name = result["backend"]
    assert_close(name, result["data"], result["want_data"], "forward data")
    if result["counted_nodes"] is not None:
        assert result["counted_nodes"] == result["nodes"]
    assert 0 < result["bytes_per_node"] < 100_000, result
    return result["bytes_per_node"]


if __name__ == "__main__":

    def measure(backend, n_ops):
        return w4_measure(backend, int(n_ops))

    fresh_main("w4_memory.py BACKEND N_OPS", measure)
