"""ops.neuron, ops.sum and ops.dot build exactly the graph of the Python line they replace."""

import warnings

import numpy as np
import pytest
from helpers import graph, raised, state
from hypothesis import given
from hypothesis import strategies as st

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import ops
    from micrograd_cpp.pure.engine import Value as PureValue

finite = st.floats(-1e3, 1e3, allow_nan=False)


def same_graph(backend, fused, plain):
    """fused(backend) and plain(PureValue) build a root; after backward the graphs are equal."""
    out, ref = fused(backend), plain(PureValue)
    out.backward()
    ref.backward()
    assert type(out) is backend
    assert graph(out) == graph(ref)


def plain_neuron(w, b, x, nonlin):
    act = sum((wi * xi for wi, xi in zip(w, x, strict=False)), b)
    return act.relu() if nonlin else act


@pytest.mark.parametrize("nonlin", [True, False, 1, 0])
@given(wx=st.lists(st.tuples(finite, finite), min_size=1, max_size=6), b=finite)
def test_neuron_is_micrograds_forward(backend, nonlin, wx, b):
    w, x = [wi for wi, _ in wx], [xi for _, xi in wx]

    def make(neuron, numbers):
        def build(V):
            return neuron([V(v) for v in w], V(b), x if numbers else [V(v) for v in x], nonlin)

        return build

    for numbers in (False, True):
        same_graph(backend, make(ops.neuron, numbers), make(plain_neuron, numbers))


@pytest.mark.parametrize(
    "x",
    [[2.0, -3], [np.float64(2.0), np.int64(-3)], np.array([2.0, -3.0]), (2, np.float32(-3))],
    ids=["numbers", "numpy-scalars", "ndarray", "tuple"],
)
def test_neuron_numbers_become_fresh_leaves(backend, x):
    w, b = [backend(0.5), backend(-1.5)], backend(0.25)
    out = ops.neuron(w, b, x, True)
    out.backward()
    wr, br = [PureValue(0.5), PureValue(-1.5)], PureValue(0.25)
    ref = plain_neuron(wr, br, [float(v) for v in x], True)
    ref.backward()
    assert type(out) is backend and graph(out) == graph(ref)
    assert [p.grad for p in [*w, b]] == [p.grad for p in [*wr, br]] == [2.0, -3.0, 1.0]


class Neuron:
    def __init__(self, w, b, nonlin):
        self.w, self.b, self.nonlin = w, b, nonlin


@given(
    ws=st.lists(st.lists(finite, min_size=2, max_size=2), min_size=1, max_size=4),
    x=st.lists(finite, min_size=2, max_size=2),
)
def test_layer_is_each_neurons_forward(backend, ws, x):
    def make(forward):
        def build(V):
            xs = [V(v) for v in x]
            neurons = [Neuron([V(v) for v in w], V(0.5), i % 2 == 0) for i, w in enumerate(ws)]
            return sum(forward(neurons, xs), V(0.0))

        return build

    same_graph(
        backend,
        make(ops.layer),
        make(lambda ns, xs: [plain_neuron(n.w, n.b, xs, n.nonlin) for n in ns]),
    )


def test_layer_edge_cases(backend):
    w = [backend(1.0), backend(2.0)]
    assert ops.layer([], [1.0, 2.0]) == []
    once = ops.layer([Neuron(w, backend(0.0), False)], iter([1.0, 2.0]))
    assert [v.data for v in once] == [5.0]
    # like [n(x) for n in ...]: the first neuron reads a generator, the second gets nothing
    twice = [Neuron(w, backend(0.0), False)] * 2
    before = state(w)
    assert raised(lambda: ops.layer(twice, iter([1.0, 2.0]))) == (
        ValueError,
        "wrong number of inputs: Neuron takes 2, got 0",
    )
    assert state(w) == before  # the first neuron's nodes are gone with the call


INPUTS = {"list": list, "tuple": tuple, "ndarray": np.array, "generator": lambda xs: iter(xs)}


@pytest.mark.parametrize("nonlin", [True, 1], ids=["bool", "int"])
@pytest.mark.parametrize("size", [0, 1, 3])
@pytest.mark.parametrize(
    "kind, values",
    [(kind, False) for kind in INPUTS] + [(kind, True) for kind in INPUTS if kind != "ndarray"],
)
def test_wrong_number_of_inputs_is_refused(backend, nonlin, size, kind, values):
    """neuron and layer raise before they make a node: nothing is created, nothing changes."""
    w, b = [backend(0.5), backend(-1.5)], backend(0.25)
    for p in [*w, b]:
        p.grad = -2.0
    xs = [backend(i + 1.0) if values else i + 1.0 for i in range(size)]
    calls = {
        "neuron": lambda x: ops.neuron(w, b, x, nonlin),
        "layer": lambda x: ops.layer([Neuron(w, b, nonlin), Neuron(w, b, nonlin)], x),
    }
    watched = [*w, b, *xs] if values else [*w, b]
    before = state(watched)
    message = f"wrong number of inputs: Neuron takes 2, got {size}"
    for call in calls.values():
        assert raised(lambda call=call: call(INPUTS[kind](xs))) == (ValueError, message)
        assert state(watched) == before
    right_sized = [backend(1.0) if values else 1.0] * 2
    kept = [call(right_sized) for call in calls.values()]
    assert len(kept) == 2 and state(watched) != before  # what succeeds shows in state()


def test_inputs_are_counted_as_the_oracle_counts(backend):
    """w needs a len(), x need only be iterable: the same errors on both backends."""
    w, b = [backend(0.5), backend(-1.5)], backend(0.25)
    assert raised(lambda: ops.neuron(iter(w), b, [1.0, 2.0], True)) == (
        TypeError,
        "object of type 'list_iterator' has no len()",
    )
    assert raised(lambda: ops.neuron(w, b, 5.0, True)) == (
        TypeError,
        "'float' object is not iterable",
    )
    # a Value's message names its type: micrograd_cpp.engine.Value on C++, Value in the oracle
    assert raised(lambda: ops.neuron(w, b, b, True))[0] is TypeError
    assert raised(lambda: ops.neuron(w, b, "ab", True))[0] is TypeError  # 'a' is no number


class Truth:
    """A nonlin whose truth is read by a Python call that runs `effect` first."""

    def __init__(self, effect):
        self.effect = effect

    def __bool__(self):
        self.effect()
        return True


def counted_neuron(w, b, x, nonlin):
    """The oracle's Neuron forward: w counted, x read and counted, then micrograd's line."""
    nin, x = len(w), list(x)
    if len(x) != nin:
        raise ValueError(f"wrong number of inputs: Neuron takes {nin}, got {len(x)}")
    return plain_neuron(w, b, x, nonlin)


def test_python_calls_after_the_count_change_nothing_that_was_counted(backend):
    """x is read and counted first. A generator that changes w afterwards, or a nonlin whose
    __bool__ empties the list x, get what the oracle gets: zip over the new w, the old x."""

    def grown(w):
        yield 2.0
        w.append(w[0] * 3.0)
        yield -3.0

    def emptied(w):
        yield 2.0
        w.clear()
        yield -3.0

    def build(neuron, change):
        def run(V):
            w, b = [V(0.5), V(-1.5)], V(0.25)
            if change == "nonlin":
                x = [2.0, V(-3.0)]
                return neuron(w, b, x, Truth(x.clear))
            return neuron(w, b, change(w), True)

        return run

    for change in (grown, emptied, "nonlin"):
        same_graph(backend, build(ops.neuron, change), build(counted_neuron, change))


def test_the_count_comes_before_nonlin_is_read(backend):
    def fail():
        raise ZeroDivisionError("nonlin")

    w, b = [backend(0.5), backend(-1.5)], backend(0.25)
    assert raised(lambda: ops.neuron(w, b, [1.0], Truth(fail))) == (
        ValueError,
        "wrong number of inputs: Neuron takes 2, got 1",
    )
    assert raised(lambda: ops.neuron(w, b, [1.0, 2.0], Truth(fail))) == (
        ZeroDivisionError,
        "nonlin",
    )


def test_neuron_shares_value_inputs(backend):
    x = [backend(1.0), backend(2.0)]
    outs = [ops.neuron([backend(0.5), backend(0.5)], backend(0.0), x, False) for _ in range(3)]
    total = ops.sum(outs)
    total.backward()
    assert [v.grad for v in x] == [1.5, 1.5]


@given(data=st.lists(finite, min_size=1, max_size=8), start=finite)
def test_sum_is_pythons_sum(backend, data, start):
    for s in (0, start, "a Value"):

        def make(total, s=s):
            def build(V):
                return total([V(x) for x in data], V(start) if s == "a Value" else s)

            return build

        same_graph(backend, make(ops.sum), make(sum))
        same_graph(backend, make(lambda vs, s: ops.sum(iter(vs), s)), make(sum))


@given(data=st.lists(finite, min_size=1, max_size=8))
def test_sum_of_a_generator(backend, data):
    same_graph(
        backend,
        lambda V: ops.sum(V(x) * V(x) for x in data),
        lambda V: sum(V(x) * V(x) for x in data),
    )


def test_sum_edge_cases(backend):
    start = backend(1.0)
    assert ops.sum([], start) is start
    assert ops.sum([]) == 0 and ops.sum(iter([])) == 0
    assert ops.sum([1.5, 2.5]) == 4.0 and ops.sum([1, 2], 3) == 6
    v = backend(2.0)
    mixed = ops.sum([1.0, v, 3])  # 0 + 1.0 is a float; then float + Value
    assert type(mixed) is backend and mixed.data == 6.0
    assert ops.sum([v, 1.0], 0.5).data == 3.5
    with pytest.raises(TypeError):
        ops.sum([v, "a"])


@given(a=st.lists(finite, max_size=8), b=st.lists(finite, max_size=8), start=finite)
def test_dot_is_the_sum_of_products(backend, a, b, start):
    def plain(x, y, s):
        return sum((xi * yi for xi, yi in zip(x, y, strict=False)), s)

    for n in range(3):  # Values times Values, Values times numbers, numbers times Values

        def make(dot, n=n):
            def build(V):
                x = a if n == 2 else [V(v) for v in a]
                y = b if n == 1 else [V(v) for v in b]
                return dot(x, y, V(start))

            return build

        same_graph(backend, make(ops.dot), make(plain))
    if a and b:
        same_graph(
            backend,
            lambda V: ops.dot([V(v) for v in a], (V(v) for v in b)),
            lambda V: plain([V(v) for v in a], (V(v) for v in b), 0),
        )


def test_dot_with_numbers_and_generators(backend):
    v = [backend(1.0), backend(-2.0), backend(3.0)]
    out = ops.dot(v, [0.5, np.float64(2.0), 1])
    out.backward()
    assert type(out) is backend and out.data == 1.0 * 0.5 - 4.0 + 3.0
    assert [x.grad for x in v] == [0.5, 2.0, 1.0]
    assert ops.dot((x for x in v), iter([1.0, 1.0])).data == -1.0  # zip stops at the shorter
    assert ops.dot([], iter([v[0]])) == 0 and ops.dot([1.0, 2.0], [3.0, 4.0]) == 11.0
    for x in v:
        x.grad = 0.0
    sq = ops.dot(v, v)  # sum of p*p: each product has p as both operands
    sq.backward()
    assert sq.data == 14.0 and [x.grad for x in v] == [2.0, -4.0, 6.0]


def test_ops_run_on_oracle_values_whatever_the_backend():
    x = [PureValue(1.0), PureValue(2.0)]
    assert type(ops.sum(x)) is PureValue and type(ops.dot(x, x)) is PureValue
    assert type(ops.neuron(x, PureValue(0.0), [1.0, 1.0], True)) is PureValue


def test_dispatch_to_the_extension(backend, monkeypatch):
    """On C++ Values each op is one call into the extension (stood in for here by recorders)."""
    calls = []

    def fake_sum(values, start):
        calls.append(("sum", list(values), start))
        return sum(calls[-1][1], start)

    def fake_dot(a, b, start):
        calls.append(("dot", list(a), list(b), start))
        return sum((x * y for x, y in zip(calls[-1][1], calls[-1][2], strict=False)), start)

    def fake_neuron(w, b, x, nonlin):
        calls.append(("neuron", w, b, x, nonlin))
        return plain_neuron(w, b, x, nonlin)

    def fake_layer(neurons, x):
        calls.append(("layer", neurons, x))
        return [plain_neuron(n.w, n.b, x, n.nonlin) for n in neurons]

    monkeypatch.setattr(ops, "_CppValue", backend)
    monkeypatch.setattr(ops, "_core_layer", fake_layer)
    monkeypatch.setattr(ops, "_core_sum", fake_sum)
    monkeypatch.setattr(ops, "_core_dot", fake_dot)
    monkeypatch.setattr(ops, "_core_neuron", fake_neuron)
    v = [backend(1.0), backend(2.0)]
    assert ops.sum(v).data == 3.0 and calls.pop() == ("sum", v, 0)
    assert ops.sum((x for x in v), 1).data == 4.0 and calls.pop() == ("sum", v, 1)
    assert ops.sum([1.0, *v]).data == 4.0 and not calls  # a number first: Python's sum
    assert ops.sum([1.0], v[0]).data == 2.0 and calls.pop() == ("sum", [1.0], v[0])
    assert ops.dot(iter(v), [3.0, 4.0]).data == 11.0 and calls.pop() == ("dot", v, [3.0, 4.0], 0)
    assert ops.dot([3.0, 4.0], v).data == 11.0 and calls.pop()[0] == "dot"
    assert ops.dot([], v) == 0 and ops.sum([]) == 0 and not calls
    assert ops.neuron(v, v[0], [1.0, 2.0], True).data == 6.0
    assert calls.pop() == ("neuron", v, v[0], [1.0, 2.0], True)
    neurons = [Neuron(v, v[0], False)]
    assert ops.layer(neurons, v)[0].data == 6.0 and calls.pop() == ("layer", neurons, v)
    if backend is not PureValue:  # other Values stay in Python
        pure = [PureValue(1.0)]
        assert type(ops.sum(pure)) is PureValue and type(ops.dot(pure, pure)) is PureValue
        assert type(ops.neuron(pure, pure[0], [1.0], False)) is PureValue
        assert type(ops.layer([Neuron(pure, pure[0], True)], [1.0])[0]) is PureValue
        assert not calls


class Sub(PureValue):
    """A subclass: set_data must go through its own data attribute."""


@pytest.mark.parametrize(
    "numbers",
    [
        np.array([1.5, -0.0, 2.0**-1074, 3.0]),  # the C++ path: a float64 buffer
        np.array([[1.5, -0.0], [2.0**-1074, 3.0]]).ravel(),
        np.arange(8.0)[::2],  # not contiguous: the Python loop
        np.array([1.5, -2.5, 3.0, 4.0], dtype=np.float32),  # not doubles: the Python loop
        [1.5, -0.0, 7, True],  # a list: the Python loop
    ],
)
def test_set_data_is_the_loop(backend, numbers):
    values, expected = [backend(9.0) for _ in range(4)], [backend(9.0) for _ in range(4)]
    ops.set_data(values, numbers)
    for v, x in zip(expected, list(numbers), strict=True):
        v.data = x
    assert [repr(v.data) for v in values] == [repr(v.data) for v in expected]
    assert all(type(v.data) is float for v in values)


def test_set_data_takes_values_of_any_kind(backend):
    values = [backend(0.0), Sub(0.0), backend(0.0)]
    ops.set_data(values, np.array([1.0, 2.0, 3.0]))
    assert [v.data for v in values] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("numbers", [np.array([1.0, 2.0]), [1.0, 2.0], np.zeros(4)])
def test_set_data_refuses_other_lengths_before_setting_any(backend, numbers):
    values = [backend(9.0) for _ in range(3)]
    error = raised(lambda: ops.set_data(values, numbers))
    assert error[0] is ValueError
    assert f"got 3 values and {len(numbers)} numbers" in str(error[1])
    assert [v.data for v in values] == [9.0] * 3
