"""micrograd-cpp against micrograd itself: its README example, its tests, and random programs.

micrograd keeps children in a set, so its topological order (and with it the order in which
gradients are summed) differs from run to run: gradients are compared with a tolerance scaled
by the magnitude of the terms summed. Forward data does not depend on that order and must be
equal.
"""

import math
import operator
import random

import pytest
from hypothesis import given, note
from hypothesis import strategies as st


def test_readme_example(backend):
    a = backend(-4.0)
    b = backend(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


# micrograd's own tests (test/test_engine.py), run on our Value


def sanity_check(x):
    z = 2 * x + 2 + x
    q = z.relu() + z * x
    h = (z * z).relu()
    return h + q + q * x


def test_sanity_check(backend):
    torch = pytest.importorskip("torch")
    x = backend(-4.0)
    y = sanity_check(x)
    y.backward()
    xt = torch.Tensor([-4.0]).double()
    xt.requires_grad = True
    yt = sanity_check(xt)
    yt.backward()
    assert y.data == yt.data.item()
    assert x.grad == xt.grad.item()


def more_ops(a, b):
    """micrograd's test_more_ops program, written without in-place operators for torch."""
    c = a + b
    d = a * b + b**3
    c = c + c + 1
    c = c + 1 + c + (-a)
    d = d + d * 2 + (b + a).relu()
    d = d + 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g = g + 10.0 / f
    return g


def test_more_ops(backend):
    torch = pytest.importorskip("torch")
    a, b = backend(-4.0), backend(2.0)
    g = more_ops(a, b)
    g.backward()
    at, bt = (torch.Tensor([x]).double() for x in (-4.0, 2.0))
    at.requires_grad = bt.requires_grad = True
    gt = more_ops(at, bt)
    gt.backward()
    tol = 1e-6
    assert abs(g.data - gt.data.item()) < tol
    assert abs(a.grad - at.grad.item()) < tol
    assert abs(b.grad - bt.grad.item()) < tol


@pytest.mark.parametrize("name", ["tanh", "exp", "log"])
@pytest.mark.parametrize("x", [-1.0, 0.123, 2.0])
def test_unary_functions_against_torch(backend, name, x):
    torch = pytest.importorskip("torch")
    if name == "log":
        x = abs(x)
    v = backend(x)
    y = getattr(v, name)()
    y.backward()
    t = torch.tensor([x], dtype=torch.float64, requires_grad=True)
    yt = getattr(t, name)()
    yt.backward()
    assert abs(y.data - yt.data.item()) < 1e-12
    assert abs(v.grad - t.grad.item()) < 1e-12


# ---------------------------------------------------------------------------------------------
# random programs in micrograd 0.1.0's vocabulary: + - * / ** relu, int/float numbers

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
EXPONENTS = [2, 3, -1, -2, 0, 1, 0.5, -0.5, 1.5, 2.0, 3.0]


def random_program(rng, n_steps):
    """Steps over earlier nodes (by index) and numbers; data stay moderate when run."""

    def number():
        return rng.choice([rng.randint(-3, 3), round(rng.uniform(-4, 4), 3), rng.uniform(-4, 4)])

    def ref():
        return rng.randrange(-4, 0) if rng.random() < 0.5 else rng.randrange(2**16)

    steps = []
    for _ in range(n_steps):
        k = rng.random()
        op = rng.choice(list(OPS))
        if k < 0.4:
            steps.append(("vv", op, ref(), ref()))
        elif k < 0.55:
            steps.append(("vn", op, ref(), number()))
        elif k < 0.7:
            steps.append(("nv", op, number(), ref()))
        elif k < 0.85:
            steps.append(("pow", ref(), rng.choice(EXPONENTS)))
        elif k < 0.93:
            steps.append(("relu", ref()))
        else:
            steps.append(("neg", ref()))
    return steps


def apply(nodes, s):
    node = lambda i: nodes[i % len(nodes)]  # noqa: E731
    kind = s[0]
    if kind == "vv":
        return OPS[s[1]](node(s[2]), node(s[3]))
    if kind == "vn":
        return OPS[s[1]](node(s[2]), s[3])
    if kind == "nv":
        return OPS[s[1]](s[2], node(s[3]))
    if kind == "pow":
        return node(s[1]) ** s[2]
    if kind == "relu":
        return node(s[1]).relu()
    return -node(s[1])


def finite_program(V, leaves, steps):
    """The steps that run on V without an error and keep every value moderate and nonzero
    where a power's gradient needs it."""
    nodes, kept = [V(x) for x in leaves], []
    for s in steps:
        if s[0] == "pow":
            x, e = nodes[s[1] % len(nodes)].data, s[2]
            if x == 0 or (x < 0 and e != int(e)):
                continue
        try:
            out = apply(nodes, s)
        except ArithmeticError:
            continue
        if not 1e-6 < abs(out.data) < 1e6 and out.data != 0:
            continue
        nodes.append(out)
        kept.append(s)
    return kept


def build(V, leaves, steps):
    nodes = [V(x) for x in leaves]
    for s in steps:
        nodes.append(apply(nodes, s))
    return nodes


def magnitudes(root):
    """For each node (by id), the sum over paths to root of |product of local derivatives|:
    the scale of the terms whose sum is its gradient."""
    order, seen, stack = [], {id(root)}, [(root, iter(root._prev))]
    while stack:
        node, kids = stack[-1]
        for k in kids:
            if id(k) not in seen:
                seen.add(id(k))
                stack.append((k, iter(k._prev)))
                break
        else:
            stack.pop()
            order.append(node)
    scale = {id(n): 0.0 for n in order}
    scale[id(root)] = 1.0
    for n in reversed(order):
        s, kids = scale[id(n)], list(n._prev)
        if n._op == "+":
            local = [(k, 1.0) for k in kids]
        elif n._op == "*" and len(kids) == 1:  # a * a
            local = [(kids[0], 2 * abs(kids[0].data))]
        elif n._op == "*":
            local = [(kids[0], abs(kids[1].data)), (kids[1], abs(kids[0].data))]
        elif n._op.startswith("**"):
            e = float(n._op[2:])
            local = [(kids[0], abs(e * kids[0].data ** (e - 1)))]
        elif n._op == "ReLU":
            local = [(kids[0], float(n.data > 0))]
        else:
            local = []
        for k, d in local:
            scale[id(k)] += d * s
    return scale


def structure(v):
    return (v._op, v.data, sorted((k._op, k.data) for k in v._prev))


@pytest.fixture(scope="module")
def upstream():
    """micrograd's Value."""
    return pytest.importorskip("micrograd.engine").Value


@given(st.integers(0, 2**64 - 1))
def test_random_programs_match_micrograd(backend, upstream, seed):
    rng = random.Random(seed)
    leaves = [rng.choice([-1, 1]) * rng.uniform(0.1, 3) for _ in range(rng.randint(2, 5))]
    steps = finite_program(backend, leaves, random_program(rng, rng.randint(20, 300)))
    note(f"leaves={leaves!r}\nsteps={steps!r}")
    ours, theirs = build(backend, leaves, steps), build(upstream, leaves, steps)
    for o, t in zip(ours, theirs, strict=True):
        assert structure(o) == structure(t)
    ours[-1].backward()
    theirs[-1].backward()
    scale = magnitudes(ours[-1])
    for o, t in zip(ours, theirs, strict=True):
        s = scale.get(id(o), 0.0)
        assert math.isfinite(o.grad) and abs(o.grad - t.grad) <= 1e-12 * s + 1e-300
