"""W6: resident memory before, at the peak and after dropping graphs of three shapes, each in a
fresh interpreter.

Run as a script, `python w6_dropped.py BACKEND SHAPE N_NODES` prints one measurement as JSON.
"""

import gc
import math
from pathlib import Path

from harness import fresh_main, in_fresh_interpreter, load, rss

W6_SHAPES = ("chain", "wide", "mlp")
W6_SIZES = (100_000, 1_000_000, 10_000_000)
W6_BACKENDS = ("cpp", "pure", "micrograd")
# Sizes a backend is not run at on this 24 GB, 2-core machine: minutes a graph, GBs of memory.
W6_LARGEST = {"cpp": 10_000_000, "pure": 1_000_000, "micrograd": 1_000_000}
MLP_NODES = 65_818  # W2's graph: the demo's loss over 100 moons


def w6_build(be, shape, n_nodes):
    """A graph of about n_nodes nodes: returns (root, what keeps its leaves alive)."""
    V = be.Value
    if shape == "chain":  # W3, 4 nodes a step
        root = x = V(1.0)
        for _ in range(n_nodes // 4):
            root = root * 1.0001 + 0.0001
        return root, x
    if shape == "wide":  # sum() of as many leaves: a leaf and a '+' each
        xs = [V(i * 1e-6) for i in range(n_nodes // 2)]
        return sum(xs), xs
    if shape == "mlp":  # the demo's loss graph, built again and again, summed
        from micrograd_cpp.datasets import make_moons

        X, y = make_moons(n_samples=100, noise=0.1, seed=1337)
        model = be.MLP(2, [16, 16, 1])
        total = 0.0
        for _ in range(max(1, round(n_nodes / MLP_NODES))):
            scores = [model(list(map(V, xrow))) for xrow in X]
            losses = [(1 + -float(yi) * si).relu() for yi, si in zip(y, scores, strict=True)]
            data_loss = sum(losses) * (1.0 / len(losses))
            reg_loss = 1e-4 * sum(p * p for p in model.parameters())
            total = data_loss + reg_loss + total
        return total, model
    raise ValueError(f"unknown shape {shape!r}")


def _peak_rss():
    """The process's resident high-water mark in bytes, from /proc/self/status (Linux). Not
    getrusage's ru_maxrss: that one survives exec, so it starts at the size of the process
    that launched this one (compare.py, after the other workloads)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmHWM in /proc/self/status")


def w6_measure(backend, shape, n_nodes):
    """Build, backpropagate and drop a graph in this (fresh) process: resident memory before, at
    the peak and after, the collector on as users run it and run once after the drop."""
    be = load(backend)
    small, keep = w6_build(be, shape, 1000)  # the code paths warm, the imports done
    be.backward(small)
    del small, keep
    gc.collect()
    before = rss()
    root, keep = w6_build(be, shape, n_nodes)
    be.backward(root)
    data, grad = be.data(root), be.grad(root)
    peak = _peak_rss()
    del root, keep
    gc.collect()
    after = rss()
    pool = None
    if backend == "cpp":
        from micrograd_cpp import _core

        pool = _core._pool_stats() if hasattr(_core, "_pool_stats") else None
    return {
        "backend": backend,
        "shape": shape,
        "nodes": n_nodes,
        "before": before,
        "peak": max(peak, before),
        "after": after,
        "data": data,
        "grad": grad,
        "pool": pool,
    }


def w6_run(backend, shape, n_nodes):
    """w6_measure in a fresh interpreter; ImportError when the backend is not installed."""
    return in_fresh_interpreter(Path(__file__), (backend, shape, n_nodes), timeout=3600)


def w6_check(result):
    """Assert a W6 measurement computed something and gave its memory back (within 20 MiB after
    a graph up to 1e6 nodes, 50 MiB after a bigger one, for micrograd-cpp); returns MiB
    (before, peak - before, after - before)."""
    assert result["grad"] == 1.0 and math.isfinite(result["data"]), result
    mib = 2**20
    grown, kept = result["peak"] - result["before"], result["after"] - result["before"]
    if result["backend"] == "cpp":
        assert kept < (20 if result["nodes"] <= 1_000_000 else 50) * mib, result
    return result["before"] / mib, grown / mib, kept / mib


if __name__ == "__main__":

    def measure(backend, shape, n_nodes):
        return w6_measure(backend, shape, int(n_nodes))

    fresh_main("w6_dropped.py BACKEND SHAPE N_NODES", measure)
