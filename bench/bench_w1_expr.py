"""W1: a random program of 100,000 scalar ops (+ - * / ** relu tanh) over 100 leaves, each op's
first operand the previous result (a chain ~1e5 deep), then one backward. Forward and backward
are timed separately; extra_info holds the median ns/op. The replay benchmark compiles the graph
once and times prog.forward() and prog.backward() together, per node."""

import harness
import pytest
import w1_expr

QUICK_OPS = 10_000


@pytest.fixture
def w1(backend, quick):
    return w1_expr.w1_pass(backend, QUICK_OPS if quick else w1_expr.W1_OPS)


@pytest.mark.benchmark(group="W1 expr forward")
def test_w1_forward(timed, w1):
    data = timed.forward(w1)
    w1.verify(data)


@pytest.mark.benchmark(group="W1 expr backward")
def test_w1_backward(timed, w1):
    data, grads = timed.backward(w1)
    w1.verify(data, grads)
    assert any(grads)


@pytest.mark.benchmark(group="W1 expr replay")
@pytest.mark.parametrize("backend_name", ["cpp", "pure"])  # compile() is micrograd-cpp's
def test_w1_replay(timed, backend, quick):
    replay = w1_expr.Replay(backend, QUICK_OPS if quick else w1_expr.W1_OPS)
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
