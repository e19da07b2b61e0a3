"""W3: a deep chain, y = y*1.0001 + 0.0001 repeated 1e3 to 1e6 times, then backward (4n + 1
nodes). extra_info holds the median ns/node.

Benchmarking disabled (CI), it runs at depth 1e3 on every backend and at 1e6 on cpp.
"""

import harness
import pytest
import w3_deep

QUICK_CASES = [(b, 10**3) for b in harness.BACKENDS] + [("cpp", 10**6)]


def pytest_generate_tests(metafunc):
    if metafunc.config.getoption("benchmark_disable"):
        cases = QUICK_CASES
    else:
        cases = [(b, n) for n in w3_deep.W3_DEPTHS for b in harness.BACKENDS]
    ids = [f"{b}-{n:.0e}".replace("+0", "") for b, n in cases]
    metafunc.parametrize(("backend_name", "depth"), cases, ids=ids)


@pytest.fixture
def w3(backend, depth):
    reason = w3_deep.w3_skip_reason(backend.name, depth)
    if reason:
        pytest.skip(reason)
    return w3_deep.w3_pass(backend, depth)


@pytest.mark.benchmark(group="W3 deep chain forward")
def test_w3_forward(timed, w3):
    data = timed.forward(w3, unit="node")
    w3.verify(data)


@pytest.mark.benchmark(group="W3 deep chain backward")
def test_w3_backward(timed, w3):
    data, grads = timed.backward(w3, unit="node")
    w3.verify(data, grads)
