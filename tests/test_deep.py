"""Deep graphs, memory and ownership: no recursion over the graph, nothing leaked or cycled.

The deep and memory tests run in a fresh interpreter, so that a crash in teardown fails one test
instead of the run, and so that resident memory is measured without the test run's noise.
"""

import gc
import sys
import weakref

import pytest
from helpers import MODULES, run_python

CHAIN = """
    import sys
    from {module} import Value

    assert sys.getrecursionlimit() == 1000
    n = {n}
    x = Value(0.5)
    y = x
    for _ in range(n):
        y = y * 1.0001 + 0.0001
    y.backward()

    # the same arithmetic in plain floats: forward, then the chain rule as backward applies it
    # (each '+' passes its grad on, each '*' gives its left operand 1.0001 * grad)
    data, grad = 0.5, 1.0
    for _ in range(n):
        data = data * 1.0001 + 0.0001
        grad = 1.0001 * grad
    assert y.data == data, (y.data, data)
    assert x.grad == grad, (x.grad, grad)
    del y
    assert (x.data, x.grad) == (0.5, grad)
    print("ok")
"""


def test_million_deep_chain():
    assert run_python(CHAIN.format(module=MODULES["cpp"], n=1_000_000)) == "ok\n"


def test_deep_chain_with_the_default_recursion_limit(backend_name):
    assert run_python(CHAIN.format(module=MODULES[backend_name], n=20_000)) == "ok\n"


def test_deep_chain_of_user_made_nodes(backend_name):
    code = f"""
        from {MODULES[backend_name]} import Value

        x = Value(0.0)
        y = x
        for i in range(100_000):
            y = Value(y.data + 1.0, (y,), "inc")
        y.backward()
        assert (y.data, y.grad, x.grad) == (100_000.0, 1.0, 0.0)
        del y
        print("ok")
    """
    assert run_python(code) == "ok\n"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_stays_flat():
    code = """
        import gc
        from micrograd_cpp._core import Value

        def resident_bytes():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * 4096

        def build_and_drop():
            a, b = Value(0.3), Value(0.7)
            y = a
            for _ in range(25_000):  # 100,000 nodes: two ops and two constants per step
                y = (y * a + b) * 0.5 + 0.25
            y.backward()

        gc.disable()
        for _ in range(3):
            build_and_drop()
        before = resident_bytes()
        for _ in range(30):
            build_and_drop()
        print(resident_bytes() - before)
    """
    growth = int(run_python(code))
    assert growth < 4 * 2**20, f"resident memory grew by {growth / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# ownership: the graph holds its nodes, nothing else does


def every_op(a, b):
    """A graph using every operator and function, numbers on both sides."""
    c = a * b + a - b / 3.0
    d = 2.0 - c.relu() + (2 / a) * (a**2) ** 0.5
    return (d.tanh() * 3 + (b * b).exp() + (a * a + 1).log() - -a) / 2


def test_dropping_the_root_frees_the_graph(backend, no_gc):
    class Leaf(backend):
        pass

    a, b = Leaf(0.5), Leaf(-1.5)
    refs = [weakref.ref(a), weakref.ref(b)]
    y = every_op(a, b)
    y.backward()
    _ = [k._prev for k in y._prev]  # reading children must not create cycles either
    del a, b, _
    assert all(r() is not None for r in refs)  # y holds its leaves
    del y
    assert [r() for r in refs] == [None, None]


def test_a_user_made_node_frees_its_children(backend, no_gc):
    class Leaf(backend):
        pass

    a = Leaf(1.0)
    ref = weakref.ref(a)
    out = backend(2.0, (a, a * 2.0), "myop")
    out.backward()
    del a
    assert ref() is not None
    del out
    assert ref() is None


def test_a_backward_closure_cycle_is_collected(backend, no_gc):
    """micrograd's style: out._backward closes over out, a cycle only the collector can free."""

    class Leaf(backend):
        pass

    def make():
        a = Leaf(1.5)
        out = backend(a.data * 2.0, (a,), "double")

        def _backward():
            a.grad += 2.0 * out.grad

        out._backward = _backward
        out.backward()
        assert a.grad == 2.0
        return weakref.ref(a)

    ref = make()
    assert ref() is not None  # held by the cycle alone
    gc.collect()
    assert ref() is None
