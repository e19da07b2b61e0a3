"""The Value API, on each backend: construction, attributes, operators, graph shape, backward.

Expected numbers come from plain Python float arithmetic following micrograd's formulas.
"""

import copy
import gc
import importlib
import inspect
import itertools
import math
import pydoc
import re
import subprocess
import sys
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from helpers import MODULES, Finalized

INF, NAN = math.inf, math.nan


def bits(x):
    """An exact key for a float: its hex form (so -0.0 != 0.0), with every nan alike."""
    return "nan" if math.isnan(x) else float.hex(x)


def fpow(x, e):
    """float ** float as Python computes it; a complex result raises ValueError."""
    r = x**e
    if isinstance(r, complex):
        raise ValueError("complex result")
    return r


def outcome(fn, *args):
    """bits of fn(*args), or the type of the exception it raises."""
    try:
        r = fn(*args)
    except Exception as e:
        return type(e)
    return bits(r.data if hasattr(r, "data") else r)


def ident(x):
    """A test id: the repr, or the type name for reprs that hold an address."""
    return type(x).__name__ if " at 0x" in repr(x) else repr(x)


def other_child(node, known):
    """The one child of node that is not `known`."""
    (rest,) = node._prev - {known}
    return rest


class OnlyFloat:
    def __float__(self):
        return 2.5

    def __repr__(self):
        return "OnlyFloat()"


class OnlyIndex:
    def __index__(self):
        return 7

    def __repr__(self):
        return "OnlyIndex()"


# ---------------------------------------------------------------------------------------------
# construction, data and grad

DATA = [
    3,
    -0,
    2**53 + 1,
    2**64 + 1,
    -(2**1000),
    2.5,
    -0.0,
    5e-324,
    1e308,
    INF,
    -INF,
    NAN,
    True,
    False,
    np.float64(0.1),
    np.float32(0.1),
    np.int64(-5),
    Fraction(1, 3),
    Decimal("0.1"),
    OnlyFloat(),
    OnlyIndex(),
]


@pytest.mark.parametrize("x", DATA, ids=repr)
def test_data_is_the_float_of_a_number(backend, x):
    v = backend(x)
    assert type(v.data) is float
    assert bits(v.data) == bits(float(x))
    assert type(v.grad) is float and bits(v.grad) == bits(0.0)


@pytest.mark.parametrize("x", ["1.0", b"1", None, 1j, [1.0], {}, object()], ids=ident)
def test_data_rejects_non_numbers(backend, x):
    with pytest.raises(TypeError):
        backend(x)


def test_data_rejects_a_value(backend):
    with pytest.raises(TypeError):
        backend(backend(1.0))


def test_data_rejects_an_int_too_large_for_a_float(backend):
    with pytest.raises(OverflowError):
        backend(10**400)


@pytest.mark.parametrize(
    "x", [2, 2.5, True, np.float64(-0.0), Fraction(1, 3), "2", None, 10**400], ids=repr
)
def test_every_way_of_calling_the_constructor_agrees(backend, x):
    """Value(x), one positional argument, has a short way in (map() takes it too); with a
    keyword or more arguments, a call goes the long way. Each makes the same Value, or raises
    the same."""

    def made(call):
        try:
            v = call()
        except Exception as e:
            return type(e), str(e)
        return type(v), bits(v.data), bits(v.grad), v._op, tuple(v._prev), v.label, gc.is_tracked(v)

    calls = [
        lambda: backend(x),
        lambda: backend(data=x),
        lambda: backend(x, ()),
        lambda: backend(x, (), "", ""),
        lambda: next(map(backend, [x])),
    ]
    assert len({made(call) for call in calls}) == 1


def test_an_init_set_on_the_class_runs_for_every_value(backend):
    # In a process of its own: the class stays changed.
    code = (
        "import importlib, sys\n"
        "Value = importlib.import_module(sys.argv[1]).Value\n"
        "seen, init = [], Value.__init__\n"
        "def logged(self, *args, **kwargs):\n"
        "    seen.append(args)\n"
        "    init(self, *args, **kwargs)\n"
        "Value.__init__ = logged\n"
        "values = [Value(2.0), *map(Value, [3.0]), Value(data=4.0)]\n"
        "assert seen == [(2.0,), (3.0,), ()], seen\n"
        "assert [v.data for v in values] == [2.0, 3.0, 4.0]\n"
    )
    run = subprocess.run([sys.executable, "-c", code, backend.__module__], capture_output=True)
    assert run.returncode == 0, run.stderr.decode()


@pytest.mark.parametrize("attr", ["data", "grad"])
@pytest.mark.parametrize("x", [4, True, np.float32(0.1), np.int64(9), Fraction(1, 3), -0.0])
def test_data_and_grad_assignment_stores_a_float(backend, attr, x):
    v = backend(1.0)
    setattr(v, attr, x)
    assert type(getattr(v, attr)) is float
    assert bits(getattr(v, attr)) == bits(float(x))


@pytest.mark.parametrize("attr", ["data", "grad"])
@pytest.mark.parametrize(
    "x, error",
    [
        ("2.0", TypeError),
        (None, TypeError),
        (1j, TypeError),
        ([1], TypeError),
        (10**400, OverflowError),
    ],
    ids=repr,
)
def test_bad_assignment_raises_and_keeps_the_old_value(backend, attr, x, error):
    v = backend(1.5)
    v.grad = -2.5
    with pytest.raises(error):
        setattr(v, attr, x)
    assert (v.data, v.grad) == (1.5, -2.5)


def test_data_and_grad_of_results_are_floats(backend):
    a = backend(3)
    unary = (a.relu(), a.tanh(), a.exp(), a.log(), a.sigmoid())
    for v in (a + 1, a * True, a**2, (a * -1).relu(), *unary):
        assert type(v.data) is float and type(v.grad) is float


@pytest.mark.parametrize("x", [1.0, -0.0, 0.1, 1e300, 5e-324, INF, -INF, NAN, 3])
def test_repr(backend, x):
    v = backend(x)
    assert repr(v) == f"Value(data={float(x)!r}, grad=0.0)"
    v.grad = -0.1
    assert repr(v) == f"Value(data={float(x)!r}, grad=-0.1)"


def test_label(backend):
    assert backend(1.0).label == ""
    assert backend(1.0, label="w1").label == "w1"
    assert backend(1.0, (), "", "w1").label == "w1"
    v = backend(1.0)
    v.label = "x"
    assert v.label == "x"
    assert (v * 2).label == ""


def test_user_attributes(backend):
    p = backend(1.0)
    p.m = 0.0
    p.m += 0.5
    p.state = {"step": 1}
    assert (p.m, p.state) == (0.5, {"step": 1})
    q = p * 2
    q.note = "product"
    assert q.note == "product"
    assert not hasattr(backend(1.0), "m")


def test_identity_semantics(backend):
    a, b = backend(1.0), backend(1.0)
    assert a == a and a != b and not (a == b)
    assert (a == 1.0) is False
    assert len({a, b, a}) == 2
    assert hash(a) == hash(a)
    d = {a: "a", b: "b"}
    assert d[a] == "a" and d[b] == "b"
    with pytest.raises(TypeError):
        a < b  # noqa: B015


# ---------------------------------------------------------------------------------------------
# _op and _prev


@pytest.mark.parametrize(
    "build, op",
    [
        (lambda a, b: a + b, "+"),
        (lambda a, b: a * b, "*"),
        (lambda a, b: a.relu(), "ReLU"),
        (lambda a, b: a.tanh(), "tanh"),
        (lambda a, b: a.exp(), "exp"),
        (lambda a, b: a.log(), "log"),
        (lambda a, b: a.sigmoid(), "sigmoid"),
        (lambda a, b: a - b, "+"),
        (lambda a, b: a / b, "*"),
        (lambda a, b: -a, "*"),
        (lambda a, b: 1 - a, "+"),
        (lambda a, b: 1 / a, "*"),
        (lambda a, b: a, ""),
    ],
    ids=[
        "a+b",
        "a*b",
        "relu",
        "tanh",
        "exp",
        "log",
        "sigmoid",
        "a-b",
        "a/b",
        "-a",
        "1-a",
        "1/a",
        "leaf",
    ],
)
def test_op_labels(backend, build, op):
    assert build(backend(2.0), backend(4.0))._op == op


@pytest.mark.parametrize(
    "base, exponent",
    [
        (2.0, 2),
        (2.0, 2.0),
        (2.0, -1),
        (2.0, 0),
        (2.0, -0.0),
        (2.0, 0.5),
        (2.0, 1e-5),
        (2.0, 1 / 3),
        (2.0, True),
        (2.0, False),
        (2.0, np.float64(2.0)),
        (2.0, np.float32(0.1)),
        (2.0, np.int64(-3)),
        (2.0, Fraction(1, 2)),
        (1.0, 2**70),
        (1.0, 1e100),
    ],
    ids=repr,
)
def test_pow_label_is_the_exponent_as_python_formats_it(backend, base, exponent):
    v = backend(base) ** exponent
    assert v._op == f"**{exponent}"
    assert bits(v.data) == bits(fpow(base, float(exponent)))


def test_user_op_label_and_children(backend):
    a, b = backend(1.0), backend(2.0)
    out = backend(3.0, (a, b), "myop")
    assert out._op == "myop" and out._prev == {a, b} and out.data == 3.0
    assert backend(0.0, [a, a, b], "dup")._prev == {a, b}
    assert backend(0.0, iter((a,)))._prev == {a}


def test_children_must_be_values(backend):
    with pytest.raises(TypeError):
        backend(1.0, (backend(1.0), 2.0), "bad")


@pytest.mark.parametrize(
    "reinit",
    [
        lambda V, b, c: b._children[0].__init__(0.0, [b]),
        lambda V, b, c: V.__init__(b._children[0], 0.0, [c]),
        lambda V, b, c: [k.__init__(0.0, (c,)) for k in b._children],
        lambda V, b, c: c._children[0]._children[0].__init__(0.0, [c]),
    ],
    ids=["through its parent", "unbound", "loop variable", "through its grandparent"],
)
def test_reinit_under_its_own_ancestor_is_refused(backend, reinit):
    # Only b refers to its child. The C++ engine skips the cycle check for a Value nobody but the
    # caller refers to, judged by its reference count, which CPython 3.14 lowers where it borrows.
    b = backend(1.0) * 2.0
    c = b + 1.0
    with pytest.raises(ValueError, match="its own descendant"):
        reinit(backend, b, c)


def test_prev_is_a_set_of_the_operands_themselves(backend):
    a, b = backend(1.0), backend(2.0)
    assert backend(1.0)._prev == set()
    assert type((a * b)._prev) is set
    assert (a * b)._prev == {a, b} and a in (a * b)._prev
    assert (a * a)._prev == {a} and (a + a)._prev == {a}
    assert a.relu()._prev == {a} and (a**2)._prev == {a}


def test_prev_keeps_the_operand_objects_alive(backend):
    a, b = backend(1.0), backend(2.0)
    a.tag = "a"
    c = a * b
    ids = {id(v) for v in c._prev}
    del a, b
    gc.collect()
    assert {id(v) for v in c._prev} == ids
    assert sorted(getattr(v, "tag", "") for v in c._prev) == ["", "a"]


def test_a_result_python_no_longer_holds_stays_in_the_graph(backend, no_gc):
    """The C++ engine frees an op's result object once Python lets go of it (Note [Ownership]);
    its node stays, and the graph reads the same as the oracle's, whose graph holds the object."""
    a = backend(2.0)
    y = a * 3.0
    y = y + 1.0  # the product is reachable from y alone now
    y.backward()
    product, one = y._children
    assert (product.data, product.grad, product._op) == (6.0, 1.0, "*")
    assert product._children[0] is a and a.grad == 3.0
    assert (one.data, one._op) == (1.0, "")


def test_values_found_through_the_graph_keep_their_identity(backend, backend_name, no_gc):
    """Values reached through the graph are the same objects each time, also after the code
    that found them let go of them and other Values took their memory."""
    engine = importlib.import_module(MODULES[backend_name])
    y = backend(1.0)
    for i in range(20):
        y = (y * 2.0 + i).tanh()
    ids = [id(v) for v in engine.topological_order(y)]
    kids = [id(k) for k in y._children[0]._children]
    others = [backend(float(i)) * 2.0 for i in range(1000)]
    assert [id(v) for v in engine.topological_order(y)] == ids
    assert [id(k) for k in y._children[0]._children] == kids
    assert len(others) == 1000


def test_values_made_after_others_were_freed_start_fresh(backend, no_gc):
    """The C++ engine keeps a few freed Value objects for the next ones (Note [Spare objects]):
    whatever the freed ones carried (attributes, a label, a custom _op and _backward, a grad)
    none of it shows on the new ones, made by Value() or by an op."""

    def fresh_check(leaf, product):
        assert (leaf.label, leaf.grad, leaf._op, leaf._prev) == ("", 0.0, "", set())
        assert (product.label, product.grad, product._op) == ("", 0.0, "*")
        assert not hasattr(leaf, "note") and not hasattr(product, "note")
        assert product._children[0] is leaf
        product.backward()  # the built-in rule, not a freed one's _backward
        assert leaf.grad == 3.0

    for i in range(100):
        used = backend(float(i), label=f"v{i}")
        used.note, used.grad, used._op = i, 5.0, "custom"
        used._backward = lambda: None
        product = used * 2.0
        product.note, product.grad = "product", 7.0
        product._backward = lambda: None
        del used, product  # two freed in a row, then new ones made
        leaf = backend(float(i))
        fresh_check(leaf, leaf * 3.0)


def test_the_type_is_referenced_by_its_live_values_only(backend, no_gc):
    """Each Value holds a reference to its class (a heap type): freed Values, kept for reuse or
    not, give theirs back."""
    gc.collect()
    before = sys.getrefcount(backend)
    x = backend(1.0)
    for i in range(10_000):
        x = x * 1.0 + backend(float(i))
    y = [backend(1.0) for _ in range(1_000)]
    assert sys.getrefcount(backend) > before
    del x, y
    gc.collect()
    assert sys.getrefcount(backend) == before


def test_cycles_through_a_values_attributes_are_collected(backend):
    freed = []

    def make_cycles():
        v = backend(1.0)
        v.me, v.witness = v, Finalized(freed, "self")
        a = backend(1.0)
        out = a * 2.0

        def backward_of_out():  # a custom op's closure refers to its own node
            a.grad += 2.0 * out.grad

        out._backward = backward_of_out
        out.witness = Finalized(freed, "closure")

    make_cycles()
    gc.collect()
    assert sorted(freed) == ["closure", "self"]


def test_a_cycle_through_the_graph_is_collected_on_cpp():
    from micrograd_cpp import _core

    freed = []
    x = _core.Value(1.0)
    x.out, x.witness = x * 2.0, Finalized(freed, "x")
    del x
    gc.collect()
    assert freed == ["x"]


def test_a_cycle_through_the_graph_is_collected_on_the_oracle():
    from micrograd_cpp.pure.engine import Value

    freed = []
    x = Value(1.0)
    x.out, x.witness = x * 2.0, Finalized(freed, "x")
    del x
    gc.collect()
    assert freed == ["x"]


def test_implicit_constant_leaf_is_the_same_object_each_time(backend):
    a = backend(1.0)
    c = a + 2
    k = other_child(c, a)
    k.tag = "two"
    gc.collect()
    assert other_child(c, a) is k and k.tag == "two"
    assert (k.data, k._op, k._prev, k.grad) == (2.0, "", set(), 0.0)


# ---------------------------------------------------------------------------------------------
# subclasses, run-time methods, copies


def test_python_subclass(backend):
    class Param(backend):
        def __init__(self, data, name):
            super().__init__(data, label=name)
            self.name = name

        def double(self):
            return self * 2

    p = Param(3.0, "p")
    assert isinstance(p, backend) and type(p) is Param
    assert (p.data, p.label, p.name) == (3.0, "p", "p")
    y = (p.double() + p).relu()
    assert isinstance(y, backend)
    (child,) = p.relu()._prev
    assert child is p
    y.backward()
    assert p.grad == 3.0 and y.data == 9.0


def test_method_added_at_run_time(backend):
    backend.double = lambda self: self * 2
    try:
        a = backend(1.5)
        d = a.double()
        assert d.data == 3.0 and d._op == "*" and len(d._prev) == 2 and a in d._prev
        d.backward()
        assert a.grad == 2.0
    finally:
        del backend.double
    assert not hasattr(backend(1.0), "double")


def graph_signature(v):
    """A structural, order-independent description of v's graph: ops, data, grads, labels."""
    kids = tuple(sorted(repr(graph_signature(k)) for k in v._prev))
    return (v._op, bits(v.data), bits(v.grad), v.label, kids)


def graph_nodes(v):
    out, stack = {}, [v]
    while stack:
        n = stack.pop()
        if id(n) not in out:
            out[id(n)] = n
            stack.extend(n._prev)
    return out


def test_copy_of_a_leaf(backend):
    a = backend(2.0, label="a")
    a.grad = 3.0
    a.m = [1]
    c = copy.copy(a)
    assert c is not a and type(c) is type(a)
    assert (c.data, c.grad, c.label, c._op, c._prev) == (2.0, 3.0, "a", "", set())
    assert c.m is a.m
    c.data, c.grad = 5.0, 6.0
    assert (a.data, a.grad) == (2.0, 3.0)


def test_copy_of_a_node_shares_its_children(backend):
    a, b = backend(2.0), backend(3.0)
    y = a * b
    c = copy.copy(y)
    assert c is not y and (c.data, c._op) == (6.0, "*") and c._prev == {a, b}
    c.backward()
    assert (a.grad, b.grad, y.grad) == (3.0, 2.0, 0.0)


def test_deepcopy_of_a_leaf(backend):
    a = backend(2.0, label="a")
    a.grad = 3.0
    a.m = [1]
    c = copy.deepcopy(a)
    assert c is not a and type(c) is type(a)
    assert (c.data, c.grad, c.label, c._op) == (2.0, 3.0, "a", "")
    assert c.m == [1] and c.m is not a.m


def test_deepcopy_of_a_node_copies_its_graph(backend):
    a, b = backend(0.3, label="a"), backend(-1.5, label="b")
    y = ((a * b + a).tanh() - b / 3) ** 2
    y.grad = 0.25
    before = graph_signature(y)
    c = copy.deepcopy(y)
    assert graph_signature(c) == before
    assert len(graph_nodes(c)) == len(graph_nodes(y))  # shared nodes stay shared
    assert not graph_nodes(c).keys() & graph_nodes(y).keys()
    for n in graph_nodes(c).values():
        n.data += 1.0
    c.backward()
    assert graph_signature(y) == before
    y2 = copy.deepcopy(y)
    y.backward()
    y2.backward()
    assert graph_signature(y2) == graph_signature(y)


def test_deepcopy_of_a_list_keeps_sharing(backend):
    a, b = backend(1.0), backend(2.0)
    y = a * b
    la, lb, ly = copy.deepcopy([a, b, y])
    assert ly._prev == {la, lb}
    assert not {la, lb, ly} & {a, b, y}


# ---------------------------------------------------------------------------------------------
# operators: results as micrograd's reductions compute them in Python floats

X, Y = 0.7, 0.1

VALUE_OPS = {
    "a+b": (lambda a, b: a + b, lambda x, y: x + y),
    "a-b": (lambda a, b: a - b, lambda x, y: x + y * -1.0),
    "a*b": (lambda a, b: a * b, lambda x, y: x * y),
    "a/b": (lambda a, b: a / b, lambda x, y: x * fpow(y, -1.0)),
    "-a": (lambda a, b: -a, lambda x, y: x * -1.0),
}


@pytest.mark.parametrize("name", VALUE_OPS)
@pytest.mark.parametrize("x, y", [(X, Y), (-3.25, 1e-300), (1e308, 10.0), (INF, 0.0), (NAN, 1.0)])
def test_value_operators(backend, name, x, y):
    op, ref = VALUE_OPS[name]
    assert outcome(op, backend(x), backend(y)) == outcome(ref, x, y)


NUMBER_OPS = {
    "a+n": (lambda a, n: a + n, lambda x, n: x + float(n)),
    "n+a": (lambda a, n: n + a, lambda x, n: x + float(n)),
    "a-n": (lambda a, n: a - n, lambda x, n: x + float(-n)),
    "n-a": (lambda a, n: n - a, lambda x, n: x * -1.0 + float(n)),
    "a*n": (lambda a, n: a * n, lambda x, n: x * float(n)),
    "n*a": (lambda a, n: n * a, lambda x, n: x * float(n)),
    "a/n": (lambda a, n: a / n, lambda x, n: x * float(n**-1)),
    "n/a": (lambda a, n: n / a, lambda x, n: fpow(x, -1.0) * float(n)),
    "a**n": (lambda a, n: a**n, lambda x, n: fpow(x, float(n))),
}
NUMBERS = [2, -3, 0, 0.1, -0.0, True, np.float64(0.1), np.float32(0.1), np.int64(3), Fraction(1, 3)]


@pytest.mark.parametrize("name", NUMBER_OPS)
@pytest.mark.parametrize("n", NUMBERS, ids=repr)
@pytest.mark.parametrize("x", [X, -0.0])
def test_operators_with_numbers(backend, name, n, x):
    op, ref = NUMBER_OPS[name]
    a = backend(x)
    expected = outcome(ref, x, n)
    assert outcome(op, a, n) == expected
    if not isinstance(expected, type):
        assert isinstance(op(a, n), backend)
    assert (bits(a.data), a.grad) == (bits(x), 0.0)


def test_augmented_assignment_rebinds_to_a_new_node(backend):
    b = backend(2.0)
    a = backend(3.0)
    steps = [a]
    a += b
    steps.append(a)
    a -= 1
    steps.append(a)
    a *= b
    steps.append(a)
    a /= 4
    steps.append(a)
    a **= 2
    steps.append(a)
    assert [s._op for s in steps] == ["", "+", "+", "*", "*", "**2"]
    assert [s.data for s in steps] == [3.0, 5.0, 4.0, 8.0, 2.0, 4.0]
    assert len({id(s) for s in steps}) == len(steps)
    assert all(prev in s._prev for prev, s in itertools.pairwise(steps))


# ---------------------------------------------------------------------------------------------
# graph shape: micrograd's reductions to +, *, **


def constant(v, data):
    """Whether v is a leaf made from a number, holding `data`."""
    return v._op == "" and v._prev == set() and bits(v.data) == bits(data)


def by_op(node):
    """node's children keyed by their _op (distinct in the cases tested)."""
    kids = {k._op: k for k in node._prev}
    assert len(kids) == len(node._prev)
    return kids


def test_neg_is_times_minus_one(backend):
    a = backend(2.0)
    n = -a
    assert n._op == "*" and a in n._prev and len(n._prev) == 2
    assert constant(other_child(n, a), -1.0)


def test_sub_is_plus_neg(backend):
    a, b = backend(2.0), backend(3.0)
    s = a - b
    assert s._op == "+" and a in s._prev
    n = other_child(s, a)
    assert n._op == "*" and b in n._prev and constant(other_child(n, b), -1.0)


@pytest.mark.parametrize("swap", [False, True])
def test_div_is_times_pow_minus_one(backend, swap):
    a, b = backend(2.0), backend(4.0)
    if swap:
        a, b = b, a
    q = a / b
    assert q._op == "*" and a in q._prev and len(q._prev) == 2
    p = other_child(q, a)
    assert p._op == "**-1" and p._prev == {b}


@pytest.mark.parametrize(
    "build, op, constant_data",
    [
        (lambda a: a + 2, "+", 2.0),
        (lambda a: 2 + a, "+", 2.0),
        (lambda a: a - 2, "+", -2.0),
        (lambda a: a - 0, "+", 0.0),  # -0 is the int 0
        (lambda a: a - False, "+", 0.0),
        (lambda a: a - 0.0, "+", -0.0),
        (lambda a: a * 2, "*", 2.0),
        (lambda a: 2 * a, "*", 2.0),
        (lambda a: a / 2, "*", 0.5),
    ],
    ids=["a+2", "2+a", "a-2", "a-0", "a-False", "a-0.0", "a*2", "2*a", "a/2"],
)
def test_operator_with_a_number_makes_a_constant_leaf(backend, build, op, constant_data):
    a = backend(8.0)
    y = build(a)
    assert y._op == op and a in y._prev and len(y._prev) == 2
    assert constant(other_child(y, a), constant_data)


def test_number_minus_value(backend):
    a = backend(8.0)
    y = 2 - a
    assert y._op == "+"
    kids = by_op(y)
    assert constant(kids[""], 2.0)
    assert kids["*"]._op == "*" and a in kids["*"]._prev
    assert constant(other_child(kids["*"], a), -1.0)


def test_number_over_value(backend):
    a = backend(8.0)
    y = 2 / a
    assert y._op == "*"
    kids = by_op(y)
    assert constant(kids[""], 2.0)
    assert kids["**-1"]._prev == {a}


# ---------------------------------------------------------------------------------------------
# operand types


class Reflecting:
    """A type Value does not know, with reflected operators of its own."""

    def __radd__(self, v):
        return "radd"

    def __rsub__(self, v):
        return "rsub"

    def __rmul__(self, v):
        return "rmul"

    def __rtruediv__(self, v):
        return "rtruediv"

    def __rpow__(self, v):
        return "rpow"


def test_unknown_operands_get_their_reflected_operator(backend):
    a, o = backend(1.0), Reflecting()
    assert (a + o, a - o, a * o, a / o, a**o) == ("radd", "rsub", "rmul", "rtruediv", "rpow")


BINARY = {
    "+": lambda x, y: x + y,
    "-": lambda x, y: x - y,
    "*": lambda x, y: x * y,
    "/": lambda x, y: x / y,
    "**": lambda x, y: x**y,
}


@pytest.mark.parametrize("op", BINARY)
@pytest.mark.parametrize("other", ["x", None, [1.0], (), 1j, Decimal("1"), object()], ids=ident)
def test_unsupported_operands_raise_type_error(backend, op, other):
    a = backend(1.0)
    with pytest.raises(TypeError):
        BINARY[op](a, other)
    with pytest.raises(TypeError):
        BINARY[op](other, a)


@pytest.mark.parametrize("base", [2, 2.0, np.float64(2.0), Fraction(2)], ids=repr)
def test_value_exponents_raise_type_error(backend, base):
    with pytest.raises(TypeError):
        backend(2.0) ** backend(2.0)
    with pytest.raises(TypeError):
        base ** backend(2.0)


# ---------------------------------------------------------------------------------------------
# numerics: each result is Python's float arithmetic on micrograd's formula, errors included


def relu(x):
    return 0.0 if x < 0 else x


def sigmoid(x):
    """sigmoid's promised formula (README): 1/(1+exp(-x)), below 0 exp(x)/(1+exp(x))."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    return math.exp(x) / (1 + math.exp(x))


UNARY = {
    "relu": (lambda v: v.relu(), relu),
    "tanh": (lambda v: v.tanh(), math.tanh),
    "exp": (lambda v: v.exp(), math.exp),
    "log": (lambda v: v.log(), math.log),
    "sigmoid": (lambda v: v.sigmoid(), sigmoid),
    "neg": (lambda v: -v, lambda x: x * -1.0),
}
SPECIAL = [-2.5, -0.0, 0.0, 5e-324, 0.5, 709.0, 710.0, -746.0, 1e308, -1e308, INF, -INF, NAN]
SPECIAL += [-5e-324, 36.0, -36.0, 37.0, -37.0, 1000.0, -1000.0]


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("x", SPECIAL)
def test_unary_numerics(backend, name, x):
    op, ref = UNARY[name]
    assert outcome(op, backend(x)) == outcome(ref, x)


BASES = [2.0, -2.0, 0.0, -0.0, 0.5, -8.0, 1.0, -1.0, 1e-320, 1e300, -1e300, INF, -INF, NAN]
EXPONENTS = [2, 3, -1, -2, 0, 0.5, -0.5, 1 / 3, 2.5, 1024, -1075, 2**70, 1e10 + 0.5]
EXPONENTS += [INF, -INF, NAN]


@pytest.mark.parametrize("e", EXPONENTS, ids=repr)
@pytest.mark.parametrize("x", BASES)
def test_pow_numerics(backend, x, e):
    assert outcome(lambda: backend(x) ** e) == outcome(fpow, x, float(e))


@pytest.mark.parametrize("name", ["a+b", "a*b", "a-b", "a/b"])
@pytest.mark.parametrize("y", [0.0, -0.0, INF, NAN, 1e-300])
@pytest.mark.parametrize("x", [1.0, -0.0, INF, -INF, 1e308])
def test_binary_numerics(backend, name, x, y):
    op, ref = VALUE_OPS[name]
    assert outcome(op, backend(x), backend(y)) == outcome(ref, x, y)


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda V: V(0.0) ** -1, ZeroDivisionError),
        (lambda V: V(10.0) ** 400, OverflowError),
        (lambda V: V(1000.0).exp(), OverflowError),
        (lambda V: V(0.0).log(), ValueError),
        (lambda V: V(-1.0).log(), ValueError),
        (lambda V: V(-8.0) ** (1 / 3), ValueError),
        (lambda V: V(1.0) / 0, ZeroDivisionError),
        (lambda V: V(1.0) / 0.0, ZeroDivisionError),
        (lambda V: V(1.0) / V(0.0), ZeroDivisionError),
        (lambda V: 1.0 / V(0.0), ZeroDivisionError),
    ],
    ids=[
        "0**-1",
        "10**400",
        "exp(1000)",
        "log(0)",
        "log(-1)",
        "(-8)**(1|3)",
        "1/0",
        "1/0.0",
        "1/V(0)",
        "1.0/V(0)",
    ],
)
def test_failing_operations_raise_python_errors(backend, build, error):
    with pytest.raises(error):
        build(backend)


@pytest.mark.parametrize(
    "op, error",
    [
        (lambda a, b: a / b, ZeroDivisionError),
        (lambda a, b: b**-1, ZeroDivisionError),
        (lambda a, b: b.log(), ValueError),
        (lambda a, b: a / 0, ZeroDivisionError),
        (lambda a, b: a**400, OverflowError),
        (lambda a, b: (a * 100).exp(), OverflowError),
    ],
    ids=["a/b", "b**-1", "log(b)", "a/0", "a**400", "exp(100a)"],
)
def test_a_failing_operation_changes_nothing(backend, op, error):
    a, b = backend(10.0), backend(0.0)
    a.grad, b.grad = 1.5, 2.5
    with pytest.raises(error):
        op(a, b)
    assert (a.data, a.grad, a._prev, b.data, b.grad, b._prev) == (10.0, 1.5, set(), 0.0, 2.5, set())


# ---------------------------------------------------------------------------------------------
# backward


def acc(*terms):
    """A gradient as backward accumulates it: 0.0, then each term added in order."""
    g = 0.0
    for t in terms:
        g += t
    return g


X2 = -0.3


@pytest.mark.parametrize("x", [0.7, -1.3, 2.5])
def test_local_gradients(backend, x):
    V = backend

    def grads(build, *data):
        leaves = [V(d) for d in data]
        out = build(*leaves)
        out.backward()
        return [leaf.grad for leaf in leaves]

    y, ax = X2, abs(x)
    assert grads(lambda a, b: a + b, x, y) == [acc(1.0), acc(1.0)]
    assert grads(lambda a, b: a * b, x, y) == [acc(y * 1.0), acc(x * 1.0)]
    assert grads(lambda a, b: a - b, x, y) == [acc(1.0), acc(-1.0 * 1.0)]
    assert grads(lambda a, b: a / b, x, y) == [
        acc(fpow(y, -1.0) * 1.0),
        acc((-1.0 * fpow(y, -2.0)) * acc(x * 1.0)),
    ]
    for e in (2, 3, -1, 0.5, -1.5):
        assert grads(lambda a, e=e: a**e, ax) == [acc((e * fpow(ax, e - 1.0)) * 1.0)]
    assert grads(lambda a: a.relu(), x) == [acc((relu(x) > 0) * 1.0)]
    assert grads(lambda a: a.tanh(), x) == [acc((1 - fpow(math.tanh(x), 2.0)) * 1.0)]
    assert grads(lambda a: a.exp(), x) == [acc(math.exp(x) * 1.0)]
    assert grads(lambda a: a.log(), ax) == [acc((1 / ax) * 1.0)]
    s = sigmoid(x)
    assert grads(lambda a: a.sigmoid(), x) == [acc(s * (1 - s) * 1.0)]


def test_gradients_of_constants(backend):
    a = backend(0.7)
    y = a * 3.0
    k = other_child(y, a)
    y.backward()
    assert (a.grad, k.grad, y.grad) == (3.0, 0.7, 1.0)


def test_backward_of_a_leaf(backend):
    a = backend(3.0)
    assert a.backward() is None
    assert a.grad == 1.0


def test_backward_sets_the_root_gradient_to_one(backend):
    a, b = backend(2.0), backend(3.0)
    y = a * b
    y.grad = 5.0
    y.backward()
    assert (y.grad, a.grad, b.grad) == (1.0, 3.0, 2.0)


def test_backward_again_accumulates_every_gradient(backend):
    a = backend(2.0)
    m = a * 3.0
    y = m + 1.0
    y.backward()
    assert (y.grad, m.grad, a.grad) == (1.0, 1.0, 3.0)
    y.backward()
    # the root is reset to 1.0; m accumulates to 2.0, and a adds 3.0 * 2.0
    assert (y.grad, m.grad, a.grad) == (1.0, 2.0, 9.0)


def test_shared_node_accumulates_in_topological_order(backend):
    x = 0.1
    a = backend(x)
    d = a * a
    e = d + a
    e.backward()
    # e = d + a gives a 1.0 first; then d's rule adds a.data * 1.0 twice
    assert a.grad == acc(1.0, x * 1.0, x * 1.0)
    assert a.grad != acc(x * 1.0, x * 1.0, 1.0)  # the order is observable


def lecture_neuron(V):
    x1, x2 = V(2.0, label="x1"), V(0.0, label="x2")
    w1, w2 = V(-3.0, label="w1"), V(1.0, label="w2")
    b = V(6.8813735870195432, label="b")
    x1w1, x2w2 = x1 * w1, x2 * w2
    x1w1x2w2 = x1w1 + x2w2
    n = x1w1x2w2 + b
    o = n.tanh()
    return o, n, x1w1x2w2, x1w1, x2w2, (x1, x2, w1, w2, b)


def lecture_expected():
    n = (2.0 * -3.0 + 0.0 * 1.0) + 6.8813735870195432
    o = math.tanh(n)
    dn = acc((1 - o**2) * 1.0)
    return o, (acc(-3.0 * dn), acc(1.0 * dn), acc(2.0 * dn), acc(0.0 * dn), acc(dn))


def test_lecture_neuron_backward(backend):
    o, *_, leaves = lecture_neuron(backend)
    o.backward()
    data, expected = lecture_expected()
    assert o.data == data
    assert tuple(v.grad for v in leaves) == expected
    assert [round(v.grad, 4) for v in leaves] == [-1.5, 0.5, 1.0, 0.0, 0.5]


def test_lecture_neuron_by_hand_calls_to_backward_steps(backend):
    o, n, x1w1x2w2, x1w1, x2w2, leaves = lecture_neuron(backend)
    o.grad = 1.0
    for node in (o, n, leaves[-1], x1w1x2w2, x2w2, x1w1):
        assert node._backward() is None
    assert tuple(v.grad for v in leaves) == lecture_expected()[1]


def test_backward_step_applies_only_the_local_rule(backend):
    a, b = backend(2.0), backend(3.0)
    c = a * b
    d = c + 1.0
    k = other_child(d, c)
    d.grad = 2.0
    d._backward()
    assert (d.grad, c.grad, k.grad, a.grad, b.grad) == (2.0, 2.0, 2.0, 0.0, 0.0)
    d._backward()
    assert (c.grad, a.grad) == (4.0, 0.0)
    a._backward()
    assert (a.grad, a.data) == (0.0, 2.0)


def test_custom_node_backward_runs_in_its_place(backend):
    a, b = backend(2.0), backend(3.0)
    m = backend(a.data * b.data + 1.0, (a, b), "fma")
    seen = []

    def _backward():
        seen.append(m.grad)
        a.grad += b.data * m.grad
        b.grad += a.data * m.grad

    m._backward = _backward
    assert m._backward is _backward
    y = m * 3.0 + m * 4.0
    y.backward()
    assert seen == [7.0]
    assert (a.grad, b.grad) == (21.0, 14.0)


def test_custom_node_without_backward_stops_gradients(backend):
    a = backend(2.0)
    m = backend(5.0, (a,), "opaque")
    (m * 2.0).backward()
    assert (m.grad, a.grad) == (2.0, 0.0)
    assert m._backward() is None


def test_assigned_backward_replaces_a_built_in_rule(backend):
    a, b = backend(2.0), backend(3.0)
    y = a * b
    calls = []
    y._backward = lambda: calls.append(y.grad)
    (y + 1.0).backward()
    assert calls == [1.0] and (a.grad, b.grad) == (0.0, 0.0)


def test_exception_in_a_custom_backward_propagates(backend):
    class Boom(Exception):
        pass

    err = Boom("boom")
    a = backend(1.0)
    m = backend(1.0, (a,), "boom")

    def _backward():
        raise err

    m._backward = _backward
    y = m * 2.0
    with pytest.raises(Boom) as info:
        y.backward()
    assert info.value is err
    assert (y.grad, m.grad, a.grad) == (1.0, 2.0, 0.0)


def test_op_added_at_run_time_in_lecture_style(backend):
    def logistic(self):  # sigmoid, under a name the engines do not use
        s = 1 / (1 + math.exp(-self.data))
        out = backend(s, (self,), "logistic")

        def _backward():
            self.grad += s * (1 - s) * out.grad

        out._backward = _backward
        return out

    backend.logistic = logistic
    try:
        a = backend(0.3)
        y = a.logistic() * 2.0
        y.backward()
        s = 1 / (1 + math.exp(-0.3))
        assert y.data == s * 2.0 and y._prev - {a}
        assert a.grad == acc(s * (1 - s) * acc(2.0 * 1.0))
    finally:
        del backend.logistic


# ---------------------------------------------------------------------------------------------
# local rules read data as it is when backward runs


@pytest.mark.parametrize(
    "build, mutate, expected",
    [
        (lambda a: a * 3.0, lambda a, y: setattr(a, "data", 5.0), acc(3.0 * 1.0)),
        (lambda a: a * a, lambda a, y: setattr(a, "data", 5.0), acc(5.0 * 1.0, 5.0 * 1.0)),
        (lambda a: a**3, lambda a, y: setattr(a, "data", 2.0), acc((3.0 * 2.0**2.0) * 1.0)),
        (lambda a: a.log(), lambda a, y: setattr(a, "data", 4.0), acc((1 / 4.0) * 1.0)),
        (lambda a: a.exp(), lambda a, y: setattr(y, "data", 2.0), acc(2.0 * 1.0)),
        (lambda a: a.tanh(), lambda a, y: setattr(y, "data", 0.5), acc((1 - 0.5**2) * 1.0)),
        (lambda a: a.relu(), lambda a, y: setattr(y, "data", -1.0), acc(False * 1.0)),
        (lambda a: (a * -1).relu(), lambda a, y: setattr(y, "data", 2.0), acc(-1.0 * 1.0)),
    ],
    ids=["a*3", "a*a", "a**3", "log", "exp", "tanh", "relu", "relu(-a)"],
)
def test_backward_reads_current_data(backend, build, mutate, expected):
    a = backend(1.0)
    y = build(a)
    mutate(a, y)
    y.backward()
    assert a.grad == expected


def test_product_rule_reads_the_other_operand_now(backend):
    a, b = backend(2.0), backend(3.0)
    y = a * b
    b.data = 7.0
    y.backward()
    assert (a.grad, b.grad) == (7.0, 2.0)


@pytest.mark.parametrize(
    "build, mutate, error",
    [
        (lambda a: a.log() * 2.0, lambda a: setattr(a, "data", 0.0), ZeroDivisionError),
        (lambda a: a**-1 * 2.0, lambda a: setattr(a, "data", 0.0), ZeroDivisionError),
        (lambda a: a**0.5 * 2.0, lambda a: setattr(a, "data", 0.0), ZeroDivisionError),
        (lambda a: a**0.5 * 2.0, lambda a: setattr(a, "data", -1.0), ValueError),
        (lambda a: a**3 * 2.0, lambda a: setattr(a, "data", 1e200), OverflowError),
    ],
    ids=["log(0)", "0**-1", "0**0.5", "(-1)**0.5", "(1e200)**3"],
)
def test_backward_raises_python_errors(backend, build, mutate, error):
    a = backend(1.0)
    y = build(a)
    mutate(a)
    with pytest.raises(error):
        y.backward()
    # the product rule ran before the failing one; the leaf got nothing
    (inner,) = y._prev - {c for c in y._prev if c._op == ""}
    assert (y.grad, inner.grad, a.grad) == (1.0, 2.0, 0.0)


def test_tanh_backward_overflow_raises(backend):
    y = backend(0.5).tanh()
    y.data = 1e200
    with pytest.raises(OverflowError):
        y.backward()


# ---------------------------------------------------------------------------------------------
# Signature and documentation: help(Value) and inspect show micrograd's constructor

SIGNATURE = "(data, _children=(), _op='', label='')"
GRAPH_ATTRIBUTES = ("_prev", "_children", "_op", "_backward")
# The C++ Value's __init__ is a method with its own signature before Python 3.13, the slot
# wrapper from 3.13 on, where inspect cannot take the signature of a class with such a method
# (see value.cpp).
INIT_IS_A_METHOD = sys.version_info < (3, 13)


def parameters(function):
    """(name, kind, default) of each parameter: the signature, annotations aside."""
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def attribute_doc(cls, name):
    """What help(cls.name) shows: the descriptor's docstring (for __slots__, their entry)."""
    return " ".join(inspect.getdoc(getattr(cls, name)).split())


def test_signature_is_micrograds(backends):
    cpp, pure = backends
    assert str(inspect.signature(cpp)) == SIGNATURE
    assert parameters(pure) == parameters(cpp)
    assert parameters(pure.__init__)[1:] == parameters(cpp)  # after self
    if INIT_IS_A_METHOD:
        assert str(inspect.signature(cpp.__init__)) == "(self, /, " + SIGNATURE[1:]


def test_help_shows_the_signature_and_documents_the_graph(backend):
    text = pydoc.render_doc(backend, renderer=pydoc.plaintext)
    words = " ".join(text.replace("|", " ").split())  # help()'s margin and line breaks aside
    assert "stores a single scalar value and its gradient" in words
    assert re.search(r"\(builtins.object\) Value\( ?data\b.*?_children\b.*?_op\b.*?label\b", words)
    if INIT_IS_A_METHOD or backend.__module__ == "micrograd_cpp.pure.engine":
        assert re.search(r"__init__\( ?self, (/, )?data\b.*?_children\b.*?_op\b.*?label\b", words)
        assert "Initialize self: a leaf holding float(data)" in words
    for name in GRAPH_ATTRIBUTES:
        doc = attribute_doc(backend, name)
        assert len(doc) > 20
        text = pydoc.render_doc(getattr(backend, name), renderer=pydoc.plaintext)
        assert doc in " ".join(text.split())


def test_both_backends_document_the_graph_alike(backends):
    cpp, pure = backends
    assert cpp.__doc__ == pure.__doc__
    assert [attribute_doc(cpp, n) for n in GRAPH_ATTRIBUTES] == [
        attribute_doc(pure, n) for n in GRAPH_ATTRIBUTES
    ]
