"""W1: a random program of 100,000 scalar ops (+ - * / ** relu tanh) over 100 leaves, each op's
first operand the previous result (a chain ~1e5 deep), then one backward. Forward and backward
are timed separately; extra_info holds the median ns/op. The replay benchmark compiles the graph
once and times prog.forward() and prog.backward() together, per node.

The forward and backward benchmarks also record, in extra_info, the floor measured in the same
run: the program recorded and backpropagated by bench/tape_anchor.cpp, in ns/op."""

import harness
import pytest
import w1_expr

ANCHOR_ROUNDS = (1, 10)  # quick, timed


@pytest.fixture
def w1(backend, quick):
    return w1_expr.w1_pass(backend, w1_expr.W1_QUICK_OPS if quick else w1_expr.W1_OPS)


@pytest.mark.benchmark(group="W1 expr forward")
def test_w1_forward(timed, w1, w1_tape_anchor, quick):
    data = timed.forward(w1)
    w1.verify(data)
    if w1_tape_anchor is not None:
        record_ns, _ = w1_tape_anchor.measure(ANCHOR_ROUNDS[not quick])
        timed.benchmark.extra_info["tape anchor record ns/op"] = record_ns


@pytest.mark.benchmark(group="W1 expr backward")
def test_w1_backward(timed, w1, w1_tape_anchor, quick):
    data, grads = timed.backward(w1)
    w1.verify(data, grads)
    assert any(grads)
    if w1_tape_anchor is not None:
        _, backward_ns = w1_tape_anchor.measure(ANCHOR_ROUNDS[not quick])
        timed.benchmark.extra_info["tape anchor backward ns/op"] = backward_ns


@pytest.mark.benchmark(group="W1 expr replay")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])  # compile() is micrograd-cpp's
def test_w1_replay(timed, backend, quick):
    replay = w1_expr.Replay(backend, w1_expr.W1_QUICK_OPS if quick else w1_expr.W1_OPS)
    data, grads = timed.rounds(
        replay.setup,
        replay.run,
        replay.result,
        harness.rounds(replay.seconds()),
        replay.count,
        "node",
    )
    replay.verify(data, grads)
    assert any(grads)
