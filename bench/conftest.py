"""Fixtures of the benchmarks: the backends, the sizes, and `timed`, which runs a workload under
benchmark.pedantic with fresh inputs each round and hands back its results to assert.

Under --benchmark-disable (as CI runs them) each benchmark runs once, at a smaller size.
"""

import gc

import harness
import pytest
import tape
import w1_expr
import w2_moons


@pytest.fixture(scope="session")
def quick(request):
    """True when benchmarking is disabled: run each workload once, small."""
    return request.config.getoption("benchmark_disable")


@pytest.fixture(params=harness.BACKENDS)
def backend_name(request):
    return request.param


@pytest.fixture
def backend(backend_name):
    """The harness.Backend, in the garbage-collector state it is measured in."""
    try:
        be = harness.load(backend_name)
    except ImportError as error:
        pytest.skip(f"{backend_name} is not installed ({error})")
    with be.running():
        yield be


class Timed:
    """benchmark.pedantic for the workloads: one round per fresh setup, each round's result read
    before its graph is freed, the median per op, node or step recorded in extra_info."""

    def __init__(self, benchmark):
        self.benchmark = benchmark

    def rounds(self, setup, target, summarize, rounds, count=1, unit="op", collect=True):
        """Run target(*setup()) for `rounds` rounds; returns the last round's summary.

        Garbage is collected before setup if `collect`, so each round starts clean.
        summarize(*inputs, result) reads a round's result (as floats) before its inputs and
        graph are freed, so no graph outlives its round.
        """
        benchmark, summaries, boxes = self.benchmark, [], []

        def box_setup():
            if collect:
                gc.collect()
            boxes[:] = [[setup()]]
            return (boxes[0],), {}

        def box_target(box):
            box.append(target(*box[0]))

        def box_teardown(box):
            summaries.append(summarize(*box[0], box[1]))
            box.clear()

        benchmark.pedantic(box_target, setup=box_setup, teardown=box_teardown, rounds=rounds)
        if boxes[0]:  # benchmarking disabled: one round and no teardown
            box_teardown(boxes[0])
        if benchmark.stats is not None:
            benchmark.extra_info[f"{unit}s"] = count
            benchmark.extra_info[f"median ns/{unit}"] = benchmark.stats.stats.median / count * 1e9
        return summaries[-1]

    def forward(self, p, unit="op"):
        """Time a harness.Pass's forward; returns the root's data."""

        def data(*inputs_and_graph):
            return p.result(inputs_and_graph[-1])[0]

        return self.rounds(p.setup, p.forward, data, harness.rounds(p.seconds()), p.count, unit)

    def backward(self, p, unit="op"):
        """Time a harness.Pass's backward on a graph built for each round; returns (root's
        data, leaves' grads)."""
        return self.rounds(
            lambda: (p.forward(*p.setup()),),
            p.backward,
            lambda graph, _: p.result(graph),
            harness.rounds(2 * p.seconds()),  # each round also builds its graph
            p.count,
            unit,
        )

    def steps(self, steps, be):
        """Time W2's steps.step, one step a round; returns the (loss, accuracy) of every step.

        As in a training loop, the garbage collector is left alone between steps, unless it is
        off: then each step's graph is collected before the next (untimed)."""
        history = []

        def record(result):
            history.append(result)

        rounds = harness.rounds(steps.seconds())
        self.rounds(tuple, steps.step, record, rounds, unit="step", collect=not be.gc)
        return history


@pytest.fixture
def timed(benchmark):
    return Timed(benchmark)


@pytest.fixture(scope="session")
def tape_anchor(tmp_path_factory):
    """bench/tape_anchor.cpp's binary, built once a session; None without a C++ compiler (the
    benchmarks then record no floor)."""
    try:
        return tape.build_tape_anchor(tmp_path_factory.mktemp("tape_anchor"))
    except ImportError:
        return None


@pytest.fixture(scope="session")
def w1_tape_anchor(tape_anchor, quick):
    """W1's program on the tape anchor (at the size the W1 benchmarks run), or None."""
    if tape_anchor is None:
        return None
    return w1_expr.W1TapeAnchor(tape_anchor, w1_expr.W1_QUICK_OPS if quick else w1_expr.W1_OPS)


@pytest.fixture(scope="session")
def w2_tape_anchor(tape_anchor):
    """W2's graph on the tape anchor, or None."""
    return None if tape_anchor is None else w2_moons.TapeAnchor(tape_anchor)
