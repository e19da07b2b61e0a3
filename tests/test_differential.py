"""The C++ engine against the pure-Python oracle: the same programs, compared bit for bit.

A program is a few leaves and a list of steps (operators between earlier nodes or with numbers
on either side, powers, unary functions, user-made nodes, writes to data and grad, single
`_backward` steps). It runs on both backends; an operation that raises must raise the same
exception type on both and is skipped. Then every node's data, grad, _op and children are
compared, backward is run from a chosen node, and compared again.
"""

import importlib
import math
import operator
import random
import struct
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st


def bits(x):
    """An exact key for a float: its hex form (so -0.0 != 0.0), with every nan alike."""
    return "nan" if math.isnan(x) else float.hex(x)


class Ref(NamedTuple):
    """An earlier node, by index (taken modulo the number of nodes when the step runs)."""

    i: int


BINARY = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "**": operator.pow,
}
UNARY = {
    "neg": operator.neg,
    "relu": lambda v: v.relu(),
    "tanh": lambda v: v.tanh(),
    "exp": lambda v: v.exp(),
    "log": lambda v: v.log(),
    "sigmoid": lambda v: v.sigmoid(),
}


def custom(V, a, b):
    """A user-made node in micrograd's style: data computed outside, a closure for backward."""
    out = V(a.data * 0.5 + b.data, (a, b), "custom")

    def _backward():
        a.grad += 0.5 * out.grad
        b.grad += out.grad

    out._backward = _backward
    return out


def step(V, nodes, s):
    """Run one step; return the new node, or None for a step that makes none."""
    node = lambda r: nodes[r.i % len(nodes)]  # noqa: E731
    kind = s[0]
    if kind == "bin":
        _, op, x, y = s
        return BINARY[op](
            node(x) if isinstance(x, Ref) else x, node(y) if isinstance(y, Ref) else y
        )
    if kind == "pow":
        return node(s[1]) ** s[2]
    if kind == "unary":
        return UNARY[s[1]](node(s[2]))
    if kind == "custom":
        return custom(V, node(s[1]), node(s[2]))
    if kind in ("data", "grad"):
        setattr(node(s[1]), kind, s[2])
        return None
    if kind == "backward_step":
        node(s[1])._backward()
        return None
    raise AssertionError(kind)


def run(V, leaves, steps):
    """Build the program on backend V: (nodes, outcome of each step)."""
    nodes = [V(x) for x in leaves]
    outcomes = []
    for s in steps:
        try:
            out = step(V, nodes, s)
        except Exception as e:
            outcomes.append(type(e).__name__)
            continue
        outcomes.append("ok")
        if out is not None:
            nodes.append(out)
    return nodes, outcomes


def describe(nodes):
    """Every node's op, data, grad and children (nodes of the list by index, others in full)."""
    index = {id(n): i for i, n in enumerate(nodes)}

    def child(k):
        i = index.get(id(k))
        if i is not None:
            return (i,)
        return (-1, k._op, bits(k.data), bits(k.grad), tuple(sorted(child(c) for c in k._prev)))

    def node(n):
        assert type(n.data) is float and type(n.grad) is float
        return (n._op, bits(n.data), bits(n.grad), tuple(sorted(child(k) for k in n._prev)))

    return [node(n) for n in nodes]


def backward(root):
    try:
        root.backward()
    except Exception as e:
        return type(e).__name__
    return "ok"


MAKERS = ("bin", "pow", "unary", "custom")  # the steps that make a node


def first_difference(cpp, pure, labels):
    """None if the lists are equal, else a short account of where they first differ."""
    if cpp == pure:
        return None
    i = next(
        (i for i, (c, p) in enumerate(zip(cpp, pure, strict=False)) if c != p),
        min(len(cpp), len(pure)),
    )
    at = lambda xs: xs[i] if i < len(xs) else "(missing)"  # noqa: E731
    return f"at {i} ({at(labels)!r}): cpp {at(cpp)!r} != pure {at(pure)!r}"


def compare(backends, leaves, steps, root=-1, writes=()):
    """Run the program on both backends and assert they agree at every stage."""
    (cpp, cpp_outcomes), (pure, pure_outcomes) = (run(V, leaves, steps) for V in backends)
    assert (diff := first_difference(cpp_outcomes, pure_outcomes, steps)) is None, f"step {diff}"

    def same_nodes(stage):
        made = [s for s, o in zip(steps, cpp_outcomes, strict=True) if o == "ok" and s[0] in MAKERS]
        names = [f"leaf {x!r}" for x in leaves] + made
        diff = first_difference(describe(cpp), describe(pure), names)
        assert diff is None, f"{stage}: node {diff}"

    same_nodes("built")
    roots = [nodes[root % len(nodes)] for nodes in (cpp, pure)]
    assert backward(roots[0]) == backward(roots[1])
    same_nodes("after backward")
    # write some data (local rules read it when backward runs), then accumulate again
    for nodes in (cpp, pure):
        for r, x in writes:
            nodes[r % len(nodes)].data = x
    assert backward(roots[0]) == backward(roots[1])
    same_nodes("after writes and a second backward")


# ---------------------------------------------------------------------------------------------
# short programs from hypothesis strategies (they shrink well)

SPECIAL = [0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, 1e-300, 1e300, 1.7e308]
numbers = st.one_of(
    st.floats(-10, 10),
    st.sampled_from(SPECIAL),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(),
    st.integers(-4, 4),
    st.integers(-(2**80), 2**80),
    st.booleans(),
    st.floats(-10, 10).map(np.float64),
    st.floats(-1e4, 1e4, width=32).map(np.float32),
    st.integers(-1000, 1000).map(np.int64),
    st.fractions(max_denominator=16).filter(lambda f: abs(f) < 100),
)
EXPONENTS = [2, 3, -1, -2, 0, 1, 0.5, -0.5, 2.0, 1 / 3, 1.5, -1.5, True, False, 400]
EXPONENTS += [np.float64(2.0), np.int64(3), np.float32(0.5), Fraction(1, 2)]
exponents = st.one_of(st.sampled_from(EXPONENTS), st.integers(-4, 6), st.floats(-4, 4))
refs = st.one_of(st.integers(-4, -1), st.integers(0, 2**16)).map(Ref)  # often a recent node
steps = st.one_of(
    st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), refs, refs),
    st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), refs, numbers),
    st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), numbers, refs),
    st.tuples(st.just("pow"), refs, exponents),
    st.tuples(st.just("unary"), st.sampled_from(list(UNARY)), refs),
    st.tuples(st.just("custom"), refs, refs),
    st.tuples(st.sampled_from(["data", "grad"]), refs, numbers),
    st.tuples(st.just("backward_step"), refs),
)
leaves = st.lists(numbers, min_size=2, max_size=5)
writes = st.lists(st.tuples(st.integers(0, 2**16), numbers), max_size=3)


@given(leaves, st.lists(steps, max_size=40), st.integers(), writes)
def test_programs(backends, leaves, steps, root, writes):
    compare(backends, leaves, steps, root, writes)


# ---------------------------------------------------------------------------------------------
# long programs (a few hundred steps) from a seeded generator; hypothesis draws the seed


def random_number(rng):
    k = rng.randrange(12)
    if k == 0:
        return rng.choice(SPECIAL)
    if k == 1:
        return rng.randint(-4, 4)
    if k == 2:
        return rng.randint(-(2**80), 2**80)
    if k == 3:
        return rng.random() < 0.5
    if k == 4:
        return np.float64(rng.uniform(-10, 10))
    if k == 5:
        return np.float32(rng.uniform(-1e4, 1e4))
    if k == 6:
        return np.int64(rng.randint(-1000, 1000))
    if k == 7:
        return Fraction(rng.randint(-50, 50), rng.randint(1, 16))
    if k == 8:
        return math.ldexp(rng.uniform(-1, 1), rng.randint(-1074, 1024))
    if k == 9:
        return struct.unpack("<d", rng.randbytes(8))[0]  # any float: nan payloads, subnormals
    return rng.uniform(-10, 10)


def random_program(rng, n_steps, number=random_number, smooth=False):
    def ref():
        return Ref(-rng.randint(1, 4) if rng.random() < 0.5 else rng.randrange(2**16))

    binary = ["+", "-", "*"] if smooth else list(BINARY)
    unary = list(UNARY)
    program = []
    for _ in range(n_steps):
        k = rng.random()
        if k < 0.3:
            s = ("bin", rng.choice(binary), ref(), ref())
        elif k < 0.45:
            s = ("bin", rng.choice([*binary, "/"]), ref(), number(rng))
        elif k < 0.6:
            s = ("bin", rng.choice([*binary, "/"]), number(rng), ref())
        elif k < 0.7:
            e = rng.choice([2, -1, 0.5, 3]) if smooth else rng.choice([*EXPONENTS, number(rng)])
            s = ("pow", ref(), e)
        elif k < 0.93 or smooth:
            s = ("unary", rng.choice(unary), ref())
        elif k < 0.95:
            s = ("custom", ref(), ref())
        elif k < 0.98:
            s = (rng.choice(["data", "grad"]), ref(), number(rng))
        else:
            s = ("backward_step", ref())
        program.append(s)
    return program


seeds = st.integers(0, 2**64 - 1)


@given(seeds)
def test_long_programs(backends, seed):
    rng = random.Random(seed)
    leaves = [random_number(rng) for _ in range(rng.randint(2, 5))]
    steps = random_program(rng, rng.randint(100, 400))
    writes = [(rng.randrange(2**16), random_number(rng)) for _ in range(3)]
    compare(backends, leaves, steps, rng.randrange(2**16), writes)


def moderate(rng):
    return rng.choice([-1, 1]) * rng.uniform(1e-3, 3)


@given(seeds)
def test_long_smooth_programs(backends, seed):
    """Finite data and few failing steps, so the graphs get deep and wide."""
    rng = random.Random(seed)
    leaves = [moderate(rng) for _ in range(rng.randint(2, 5))]
    steps = random_program(rng, rng.randint(100, 400), moderate, smooth=True)
    compare(backends, leaves, steps)


# ---------------------------------------------------------------------------------------------
# fixed programs for the cases the contract names


@pytest.mark.parametrize(
    "program",
    [
        [  # log's rule divides by its input, set to 0.0 after the forward
            ("unary", "log", Ref(0)),  # 2
            ("bin", "*", Ref(2), Ref(1)),  # 3
            ("bin", "+", Ref(3), Ref(0)),  # 4
            ("data", Ref(0), 0.0),
        ],
        [  # pow's rule raises 0.0 to the power -2
            ("pow", Ref(0), -1),  # 2
            ("bin", "*", Ref(1), Ref(2)),  # 3
            ("bin", "*", Ref(3), Ref(0)),  # 4
            ("data", Ref(0), 0.0),
        ],
    ],
    ids=["log", "pow"],
)
def test_backward_error_leaves_the_same_partial_grads(backends, program):
    leaves = [2.0, 3.0]
    compare(backends, leaves, program)
    (cpp, _), (pure, _) = (run(V, leaves, program) for V in backends)
    for nodes in (cpp, pure):
        with pytest.raises(ZeroDivisionError):
            nodes[4].backward()
    assert describe(cpp) == describe(pure)


def test_writes_to_leaf_data_before_backward(backends):
    leaves = [0.3, -1.7, 2.5]
    program = [
        ("bin", "*", Ref(0), Ref(1)),
        ("unary", "tanh", Ref(3)),
        ("bin", "/", Ref(4), Ref(2)),
        ("unary", "exp", Ref(5)),
        ("bin", "-", Ref(6), Ref(0)),
        ("pow", Ref(7), 2),
    ]
    writes = [(0, 1.25), (1, -0.5), (2, 4.0), (4, 0.1)]
    compare(backends, leaves, program + [("data", Ref(i), x) for i, x in writes])
    compare(backends, leaves, program, writes=writes)


def test_user_node_sharing_children(backends):
    leaves = [0.5, 1.5]
    program = [
        ("custom", Ref(0), Ref(0)),
        ("custom", Ref(2), Ref(1)),
        ("bin", "*", Ref(3), Ref(2)),
        ("backward_step", Ref(4)),
    ]
    compare(backends, leaves, program)


ODD_DATA = [3, 2.5, -0.0, True, 2**64 + 1, 10**400, np.float32(0.1), np.int64(7), Fraction(2, 3)]
ODD_DATA += [Decimal("0.1"), np.array(2.0), "1", None, 1j, [1.0], object()]


@pytest.mark.parametrize(
    "x",
    ODD_DATA,
    ids=lambda x: type(x).__name__ if " at 0x" in repr(x) else repr(x),
)
def test_constructor_agrees(backends, x):
    def outcome(V):
        try:
            return bits(V(x).data)
        except Exception as e:
            return type(e).__name__

    cpp, pure = backends
    assert outcome(cpp) == outcome(pure)


def test_topological_order_agrees(backends):
    cpp, pure = (
        importlib.import_module(m) for m in ("micrograd_cpp._core", "micrograd_cpp.pure.engine")
    )
    leaves = [0.5, -2.0, 3.0]
    program = [
        ("bin", "*", Ref(0), Ref(1)),
        ("bin", "+", Ref(3), Ref(2)),
        ("bin", "-", Ref(4), Ref(0)),
        ("bin", "/", 2.0, Ref(5)),
        ("bin", "*", Ref(6), Ref(3)),
        ("unary", "relu", Ref(7)),
    ]
    orders = []
    for module in (cpp, pure):
        nodes, _ = run(module.Value, leaves, program)
        index = {id(n): i for i, n in enumerate(nodes)}
        topo = module.topological_order(nodes[-1])
        orders.append([(index.get(id(n), -1), n._op, bits(n.data)) for n in topo])
        assert len({id(n) for n in topo}) == len(topo)
    assert orders[0] == orders[1]


# ---------------------------------------------------------------------------------------------
# sigmoid: one formula on both engines, for every double


@given(st.floats(allow_nan=True, allow_infinity=True) | st.floats(-800, 800))
def test_sigmoid_is_the_oracles_bit_for_bit(backends, x):
    values, grads = [], []
    for V in backends:
        a = V(x)
        s = a.sigmoid()
        (s * 3.0).backward()
        values.append(bits(s.data))
        grads.append(bits(a.grad))
    assert values[0] == values[1]
    assert grads[0] == grads[1]


@pytest.mark.parametrize("x", [-1e308, -1000.0, -745.5, 745.5, 1000.0, 1e308, -math.inf, math.inf])
def test_sigmoid_never_overflows(backend, x):
    a = backend(x)
    s = a.sigmoid()
    s.backward()
    assert s.data == (0.0 if x < 0 else 1.0)
    assert a.grad == 0.0  # s * (1 - s) is exactly 0 in both tails


@given(st.floats(-700, 700))
def test_sigmoid_is_the_textbook_formula_to_an_ulp_or_two(backend, x):
    textbook = 1 / (1 + math.exp(-x))
    assert math.isclose(backend(x).sigmoid().data, textbook, rel_tol=1e-15, abs_tol=1e-300)
