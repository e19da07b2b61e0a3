"""Gradients against central finite differences of the forward pass, op by op and composed."""

import math

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
