"""Gradients against central finite differences of the forward pass, op by op and composed."""

import math

import micrograd_cpp
import pytest
from hypothesis import given
from hypothesis import strategies as st


def check_gradients(V, fn, xs, rtol=1e-5):
    """backward's gradient of fn at xs against (f(x+h) - f(x-h)) / 2h, for each input."""
    leaves = [V(x) for x in xs]
    out = fn(*leaves)
    out.backward()
    f0 = abs(out.data)
    for i, x in enumerate(xs):
        h = 1e-6 * max(1.0, abs(x))
        up = fn(*[V(x + h if j == i else y) for j, y in enumerate(xs)]).data
        down = fn(*[V(x - h if j == i else y) for j, y in enumerate(xs)]).data
        numeric = (up - down) / (2 * h)
        # rounding in f(x +- h) costs about eps * |f| / h = 2e-10 * |f|; truncation about h**2
        tolerance = rtol * abs(numeric) + 1e-6 * max(1.0, f0)
        assert abs(leaves[i].grad - numeric) <= tolerance, (i, leaves[i].grad, numeric)


OPS = {
    "a+b": lambda a, b: a + b,
    "a-b": lambda a, b: a - b,
    "a*b": lambda a, b: a * b,
    "a/b": lambda a, b: a / b,
    "-a": lambda a, b: -a,
    "a*a": lambda a, b: a * a,
    "a/a+b": lambda a, b: a / a + b,
    "relu": lambda a, b: a.relu() * b,
    "tanh": lambda a, b: a.tanh(),
    "exp": lambda a, b: a.exp(),
    "log": lambda a, b: (a * a).log(),
    "sigmoid": lambda a, b: (a * b).sigmoid(),
    "2.5+a": lambda a, b: 2.5 + a,
    "2.5-a": lambda a, b: 2.5 - a,
    "a-2.5": lambda a, b: a - 2.5,
    "2.5*a": lambda a, b: 2.5 * a,
    "2.5/a": lambda a, b: 2.5 / a,
    "a/2.5": lambda a, b: a / 2.5,
}


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("x, y", [(0.7, -1.3), (-2.1, 0.4), (1.9, 3.2)])
def test_each_op(backend, name, x, y):
    check_gradients(backend, OPS[name], [x, y])


@pytest.mark.parametrize("e", [2, 3, -1, -2, 0, 1, 0.5, -0.5, 1.5, 2.0, 1 / 3])
@pytest.mark.parametrize("x", [0.3, 1.7, 4.0])
def test_pow(backend, x, e):
    check_gradients(backend, lambda a: a**e, [x])


@pytest.mark.parametrize("x", [-1.0, 0.123, 2.0])
def test_tanh_exp_log_compositions(backend, x):
    check_gradients(backend, lambda a: (a.tanh() * a).exp() + (a * a + 1).log(), [x])


def lecture_neuron(x1, x2, w1, w2, b):
    return (x1 * w1 + x2 * w2 + b).tanh()


def test_lecture_neuron(backend):
    check_gradients(backend, lecture_neuron, [2.0, 0.0, -3.0, 1.0, 6.8813735870195432])


# Random compositions whose every value stays moderate and away from relu's kink, so finite
# differences are accurate.
COMPOSE = [
    lambda a, b: (a * b).tanh(),
    lambda a, b: (a + b).tanh(),
    lambda a, b: a - b,
    lambda a, b: a / (b**2 + 1),
    lambda a, b: (a.tanh() - 0.5 * b.tanh()).exp(),
    lambda a, b: (a * a + 1).log() * b.tanh(),
    lambda a, b: a.tanh() ** 3,
    lambda a, b: (a * a + 0.5).relu() - b,
    lambda a, b: 1 / (2 + a.tanh()) + b / 3,
    lambda a, b: -((a * 0.5) ** 2) + b**2 / 4,
]
programs = st.lists(
    st.tuples(st.integers(0, len(COMPOSE) - 1), st.integers(0, 10**6), st.integers(0, 10**6)),
    min_size=1,
    max_size=25,
)


def compose(program):
    def fn(*leaves):
        nodes = list(leaves)
        for k, i, j in program:
            nodes.append(COMPOSE[k](nodes[i % len(nodes)], nodes[j % len(nodes)]))
        return nodes[-1]

    return fn


@given(st.lists(st.floats(-2, 2), min_size=1, max_size=4), programs)
def test_random_compositions(backend, xs, program):
    check_gradients(backend, compose(program), xs)


def test_finite_differences_catch_a_wrong_gradient(backend):
    """The check itself can fail: a node whose backward is off by 1% is caught."""
    a = backend(0.8)

    def wrong(a):
        out = backend(math.sin(a.data), (a,), "sin")

        def _backward():
            a.grad += 1.01 * math.cos(a.data) * out.grad

        out._backward = _backward
        return out

    with pytest.raises(AssertionError):
        check_gradients(backend, wrong, [a.data])


# ---------------------------------------------------------------------------------------------
# micrograd_cpp.gradcheck, the public check


def sin(V, a, slope=1.0):
    """A user's own op, lecture style: data computed outside, a closure for backward. With a
    slope other than 1 its rule is wrong by that factor."""
    out = V(math.sin(a.data), (a,), "sin")

    def _backward():
        a.grad += slope * math.cos(a.data) * out.grad

    out._backward = _backward
    return out


@pytest.mark.parametrize(
    "f, xs",
    [
        (lambda a: a.sigmoid(), [0.3]),
        (lambda a, b: (a * b).sigmoid() + a.sigmoid(), [-1.7, 0.4]),
        (lambda a: a.tanh(), [0.7]),
        (lambda a: a.exp(), [1.3]),
        (lambda a: a.log(), [2.5]),
        (lambda a: a**3 + a**-1.5, [1.2]),
        (lambda a, b: a / b - b.relu(), [0.8, 1.9]),
        (lecture_neuron, [2.0, 0.0, -3.0, 1.0, 6.8813735870195432]),
    ],
    ids=["sigmoid", "sigmoid2", "tanh", "exp", "log", "pow", "div-relu", "neuron"],
)
def test_gradcheck_passes_the_builtin_ops(backend, f, xs):
    assert micrograd_cpp.gradcheck(f, [backend(x) for x in xs]) is True


def test_gradcheck_passes_a_correct_custom_op(backend):
    f = lambda a, b: sin(backend, a * b) + a  # noqa: E731
    assert micrograd_cpp.gradcheck(f, [backend(0.6), backend(-1.1)]) is True


def test_gradcheck_fails_a_broken_custom_op(backend):
    f = lambda a, b: sin(backend, a, slope=1.5) * b  # noqa: E731
    with pytest.raises(micrograd_cpp.GradcheckError) as info:
        micrograd_cpp.gradcheck(f, [backend(0.6), backend(2.0)])
    error = info.value
    assert isinstance(error, AssertionError)
    # a's gradient is off by half; b's is right: a is the worst input
    assert (error.index, error.x) == (0, 0.6)
    assert error.analytic == 1.5 * math.cos(0.6) * 2.0
    assert math.isclose(error.numeric, math.cos(0.6) * 2.0, rel_tol=1e-6)
    assert "input 0" in str(error) and repr(error.analytic) in str(error)


def test_gradcheck_names_the_worst_of_several_wrong_inputs(backend):
    def f(a, b):
        return sin(backend, a, slope=1.01) + sin(backend, b, slope=1.5)

    with pytest.raises(micrograd_cpp.GradcheckError) as info:
        micrograd_cpp.gradcheck(f, [backend(0.2), backend(0.3)])
    assert info.value.index == 1


def test_gradcheck_tolerances_decide(backend):
    f = lambda a: sin(backend, a, slope=1.0001)  # noqa: E731
    with pytest.raises(micrograd_cpp.GradcheckError):
        micrograd_cpp.gradcheck(f, [backend(0.5)], rtol=1e-6)
    assert micrograd_cpp.gradcheck(f, [backend(0.5)], rtol=1e-3)


def test_gradcheck_fails_a_nan_gradient(backend):
    def f(a):
        out = backend(a.data, (a,), "id")

        def _backward():
            a.grad += math.nan

        out._backward = _backward
        return out

    with pytest.raises(micrograd_cpp.GradcheckError):
        micrograd_cpp.gradcheck(f, [backend(1.0)])


def test_gradcheck_numbers_run_on_the_active_engine():
    assert micrograd_cpp.gradcheck(lambda a, b: a * b.sigmoid(), [0.5, -0.25])


def test_gradcheck_wants_a_value(backend):
    with pytest.raises(TypeError, match="must return a Value"):
        micrograd_cpp.gradcheck(lambda a: 2.0, [backend(1.0)])
