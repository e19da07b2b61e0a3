"""The benchmark workloads, shared by the pytest benchmarks (bench_*.py) and compare.py.

W1  a seeded random program of scalar ops, each taking the previous result as first operand
W2  one training step of micrograd's demo.ipynb: MLP(2, [16, 16, 1]) on 100 moons, SVM loss
W3  a deep chain, y = y*1.0001 + 0.0001 repeated n times
W4  resident memory per graph node of W1, measured in a fresh interpreter per backend
W6  resident memory before, at the peak and after dropping graphs of three shapes (fresh
    interpreters)
(W5, a digits classifier's training step, is in w5_digits.py.)

Every workload runs on each backend of BACKENDS: micrograd-cpp's C++ engine ('cpp') and its
pure-Python oracle ('pure'), and, when installed, upstream micrograd 0.1.0 as users run it
('micrograd') and with the garbage collector off ('micrograd-nogc'), and torch on one-element
float64 tensors ('torch', one thread). W2 also runs torch the way torch users write it
('batched'), and micrograd-cpp's own loss and optimizer ('optim').

Each workload checks what it computes: cpp must equal the pure oracle exactly; micrograd and
torch must agree with it to 1e-9 relative (they sum gradients in another order).

Run as a script, `python workloads.py memory BACKEND N_OPS` prints W4's measurement as JSON, and
`python workloads.py dropped BACKEND SHAPE N_NODES` W6's.
"""

import contextlib
import gc
import json
import math
import operator
import os
import random
import subprocess
import sys
from functools import lru_cache
from pathlib import Path
from time import perf_counter_ns as time_ns

import numpy as np

BACKENDS = ("cpp", "pure", "micrograd", "micrograd-nogc", "torch")
UPSTREAM = ("micrograd", "micrograd-nogc")
EXACT = ("cpp", "pure")  # backends that must equal the oracle bit for bit
REL_TOL = 1e-9  # for the others

# rough cost of one op or node (forward or backward) in ns, to size a benchmark's rounds
COST_NS = {"cpp": 150, "pure": 3000, "micrograd": 15000, "micrograd-nogc": 2000, "torch": 8000}
# rough cost of one W2 step in s, by backend (and for torch batched)
STEP_S = {"cpp": 0.005, "pure": 0.25, "micrograd": 1.0, "micrograd-nogc": 0.15, "torch": 0.6}
STEP_S["batched"] = 0.001


def rounds(seconds, budget=2.0, most=20):
    """How many rounds of `seconds` each to run in a budget: at least 2, at most `most`."""
    return max(2, min(most, int(budget / seconds)))


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


class Backend:
    """A scalar autograd engine, as the workloads drive it.

    Value(x) makes a leaf (a parameter: for torch, a tensor requiring grad); relu and tanh are
    functions of one Value; data and grad read a Value as floats.
    """

    def __init__(self, name, Value, relu, tanh, MLP, gc=True):
        self.name, self.Value, self.relu, self.tanh, self.MLP = name, Value, relu, tanh, MLP
        self.gc = gc

    def data(self, v):
        return float(v.data)

    def grad(self, v):
        return float(v.grad)

    def backward(self, root):
        root.backward()

    @contextlib.contextmanager
    def running(self):
        """The state the backend is measured in: the garbage collector on, unless self.gc is
        False. Garbage is collected on entry and on exit."""
        was_enabled = gc.isenabled()
        gc.collect()
        if not self.gc:
            gc.disable()
        try:
            yield self
        finally:
            if was_enabled:
                gc.enable()
            gc.collect()

    def __repr__(self):
        return f"Backend({self.name!r})"


class Upstream(Backend):
    """micrograd 0.1.0. Its topological sort recurses once per level of the graph, so backward
    raises the recursion limit (Python 3.11+ runs Python-to-Python calls off the C stack)."""

    RECURSION_LIMIT = 1_000_000

    def backward(self, root):
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, self.RECURSION_LIMIT))
        try:
            root.backward()
        finally:
            sys.setrecursionlimit(limit)


class Torch(Backend):
    def data(self, v):
        return v.item()

    def grad(self, v):
        return 0.0 if v.grad is None else v.grad.item()


def upstream_tanh(self):
    """micrograd 0.1.0 has no tanh: the lecture's, as users add it (computed with math.tanh)."""
    from micrograd.engine import Value

    t = math.tanh(self.data)
    out = Value(t, (self,), "tanh")

    def _backward():
        self.grad += (1 - t**2) * out.grad

    out._backward = _backward
    return out


def load(name):
    """The Backend called name; ImportError when it is not installed."""
    if name == "cpp":
        from micrograd_cpp import engine, nn  # what users import

        if engine.BACKEND != "cpp":
            raise ImportError("micrograd_cpp.engine is not the C++ engine (MICROGRAD_CPP_BACKEND)")
        V = engine.Value
        return Backend(name, V, V.relu, V.tanh, nn.MLP)
    if name == "pure":
        from micrograd_cpp.pure import engine, nn

        V = engine.Value
        return Backend(name, V, V.relu, V.tanh, nn.MLP)
    if name in UPSTREAM:
        from micrograd import engine, nn

        V = engine.Value
        return Upstream(name, V, V.relu, upstream_tanh, nn.MLP, gc=name == "micrograd")
    if name == "torch":
        torch = _torch()

        def leaf(x):
            return torch.tensor([float(x)], dtype=torch.float64, requires_grad=True)

        return Torch(name, leaf, torch.relu, torch.tanh, torch_scalar_mlp())
    raise ValueError(f"unknown backend {name!r}")


def assert_close(backend, got, want, what="result"):
    """got == want on the exact backends, else equal to REL_TOL relative."""
    if backend in EXACT:
        assert got == want, f"{backend}: {what} {got!r} != {want!r}"
    else:
        assert math.isclose(got, want, rel_tol=REL_TOL), f"{backend}: {what} {got!r} vs {want!r}"


class Pass:
    """A graph built and backpropagated on one backend: W1 or W3.

    setup() makes the inputs (untimed); forward(*inputs) builds the graph, returned as
    (root, leaves); backward(graph) runs root.backward(); result(graph) reads the root's data
    and the leaves' grads as floats, and verify(data, grads=None) asserts them. `count` is the
    number of ops or nodes that timings are divided by.
    """

    def __init__(self, be, count, setup, forward, want_data, want_grads):
        self.be, self.count, self.setup, self.forward = be, count, setup, forward
        self._want_data, self._want_grads = want_data, want_grads  # callables, called if needed

    def backward(self, graph):
        self.be.backward(graph[0])

    def result(self, graph):
        root, leaves = graph
        return self.be.data(root), [self.be.grad(v) for v in leaves]

    def verify(self, data, grads=None):
        name = self.be.name
        assert_close(name, data, self._want_data(), "forward data")
        if grads is not None:
            want = self._want_grads()
            assert len(grads) == len(want)
            for i, (g, w) in enumerate(zip(grads, want, strict=True)):
                assert_close(name, g, w, f"grad of leaf {i}")

    def seconds(self):
        """A rough estimate of forward's (or backward's) time."""
        return self.count * COST_NS[self.be.name] * 1e-9


# ---------------------------------------------------------------------------------------------
# W1: a random program of scalar ops

W1_OPS = 100_000
W1_QUICK_OPS = 10_000  # under --benchmark-disable and compare.py --quick
N_LEAVES = 100
W1_SEED = 20240501
CONSTANTS = (0.5, 1.5, 2.0, 3.0)
OP_WEIGHTS = {"+": 3, "-": 3, "*": 3, "/": 3, "**": 1, "relu": 1, "tanh": 2}
BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


class Program:
    """leaves: the leaves' values; ops: (op, arg) pairs applied in turn to the running result r,
    which starts as leaf 0. For + - * / arg is a leaf's index (an int) or a constant (a float);
    for '**' the int exponent; for 'relu' and 'tanh' None. result: r, computed in floats."""

    def __init__(self, leaves, ops, result):
        self.leaves, self.ops, self.result = leaves, ops, result

    def nodes(self):
        """The number of nodes of micrograd's graph of the program: the leaves used, each op's
        node, and the Values micrograd makes on the way: a constant's leaf; for a leaf b,
        r - b is r + b*-1 (with a leaf -1) and r / b is r * b**-1."""
        leaf_args = [(op, a) for op, a in self.ops if op in BINARY and type(a) is int]
        n = len({0} | {a for _, a in leaf_args}) + len(self.ops)
        n += sum(op in BINARY for op, _ in self.ops) - len(leaf_args)  # constants' leaves
        n += sum({"-": 2, "/": 1}.get(op, 0) for op, _ in leaf_args)
        return n


def _apply(op, r, b):
    """One op on floats, as micrograd computes it (r - b is r + -b, r / b is r * b**-1)."""
    if op == "+":
        return r + b
    if op == "-":
        return r + -b
    if op == "*":
        return r * b
    if op == "/":
        return r * b**-1
    if op == "**":
        return r**b
    if op == "relu":
        return 0.0 if r < 0 else r
    return math.tanh(r)


@lru_cache(maxsize=4)
def w1_program(n_ops, seed=W1_SEED):
    """A random program of n_ops ops over N_LEAVES leaves.

    The values stay bounded: leaves and constants lie in [0.5, 3] in magnitude, so divisors are
    bounded away from 0; powers (2 or 3) apply only when |r| <= 2; r is scaled by 0.25 whenever
    |r| > 4. A fifth of the operands are constants, the rest leaves.
    """
    rng = random.Random(seed)
    leaves = [rng.choice((-1, 1)) * rng.uniform(0.5, 2.0) for _ in range(N_LEAVES)]
    names, weights = list(OP_WEIGHTS), list(OP_WEIGHTS.values())
    ops = []
    r = leaves[0]
    for _ in range(n_ops):
        if abs(r) > 4:
            op, arg = "*", 0.25
        else:
            op = rng.choices(names, weights)[0]
            if op == "**" and abs(r) > 2:
                op = "tanh"
            if op == "**":
                arg = rng.choice((2, 3))
            elif op in BINARY:
                arg = rng.choice(CONSTANTS) if rng.random() < 0.2 else rng.randrange(N_LEAVES)
            else:
                arg = None
        r = _apply(op, r, leaves[arg] if op in BINARY and type(arg) is int else arg)
        ops.append((op, arg))
    return Program(leaves, ops, r)


def w1_setup(be, program):
    """(leaves, steps) for be: fresh leaves, and the program as (function, operand) pairs with
    operand None for a function of one argument."""
    leaves = [be.Value(x) for x in program.leaves]
    steps = []
    for op, arg in program.ops:
        if op == "relu":
            steps.append((be.relu, None))
        elif op == "tanh":
            steps.append((be.tanh, None))
        elif op == "**":
            steps.append((operator.pow, arg))
        else:
            steps.append((BINARY[op], leaves[arg] if type(arg) is int else arg))
    return leaves, steps


def w1_forward(leaves, steps):
    """Run the program: (root, leaves)."""
    r = leaves[0]
    for f, b in steps:
        r = f(r) if b is None else f(r, b)
    return r, leaves


@lru_cache(maxsize=4)
def w1_reference(n_ops):
    """(data, leaves' grads) of the program of n_ops ops on the pure-Python oracle."""
    be = load("pure")
    root, leaves = w1_forward(*w1_setup(be, w1_program(n_ops)))
    root.backward()
    return root.data, [v.grad for v in leaves]


def w1_pass(be, n_ops=W1_OPS):
    program = w1_program(n_ops)
    return Pass(
        be,
        n_ops,
        setup=lambda: w1_setup(be, program),
        forward=w1_forward,
        want_data=lambda: program.result,
        want_grads=lambda: w1_reference(n_ops)[1],
    )


class Replay:
    """W1's graph built once and compiled (micrograd_cpp.compile; 'cpp', 'pure'). Each round
    replays it from its leaves, prog.forward() then prog.backward(), after setting the leaves'
    grads to 0 (untimed); `count` is the number of nodes, which timings are divided by."""

    def __init__(self, be, n_ops=W1_OPS):
        import micrograd_cpp

        self.be, self.pass_ = be, w1_pass(be, n_ops)
        self.root, self.leaves = self.pass_.forward(*self.pass_.setup())
        self.prog = micrograd_cpp.compile(self.root)
        self.count = len(self.prog)

    def setup(self):
        for v in self.leaves:
            v.grad = 0.0
        return (self.prog,)

    @staticmethod
    def run(prog):
        prog.forward()
        prog.backward()

    def result(self, *_):
        return self.pass_.result((self.root, self.leaves))

    def verify(self, data, grads):
        self.pass_.verify(data, grads)

    def seconds(self):
        return self.count * COST_NS[self.be.name] * 1e-9


# ---------------------------------------------------------------------------------------------
# W2: demo.ipynb's training step

W2_SEED = 1337
W2_CHECKED_STEPS = 20  # steps compared with the oracle's; later ones must be finite


def w2_notebook(Value, MLP):
    """demo.ipynb's cells on the Value and MLP given: returns step(), which runs the body of the
    notebook's training loop (k counting steps, modulo the notebook's 100) and returns the step's
    (loss, accuracy) as floats where the notebook prints them. The code is the notebook's,
    verbatim but for make_moons: micrograd-cpp's, the same data, with labels already -1 or 1."""
    from micrograd_cpp.datasets import make_moons

    np.random.seed(1337)
    random.seed(1337)
    # sklearn.datasets.make_moons(n_samples=100, noise=0.1), from numpy's global random state
    X, y = make_moons(n_samples=100, noise=0.1, seed=None)
    # (micrograd_cpp's make_moons already returns y*2 - 1)

    model = MLP(2, [16, 16, 1])  # 2-layer neural network

    # loss function
    def loss(batch_size=None):
        # inline DataLoader :)
        if batch_size is None:
            Xb, yb = X, y
        else:
            ri = np.random.permutation(X.shape[0])[:batch_size]
            Xb, yb = X[ri], y[ri]
        inputs = [list(map(Value, xrow)) for xrow in Xb]

        # forward the model to get scores
        scores = list(map(model, inputs))

        # svm "max-margin" loss
        losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(yb, scores, strict=True)]
        data_loss = sum(losses) * (1.0 / len(losses))
        # L2 regularization
        alpha = 1e-4
        reg_loss = alpha * sum(p * p for p in model.parameters())
        total_loss = data_loss + reg_loss

        # also get accuracy
        accuracy = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(yb, scores, strict=True)]
        return total_loss, sum(accuracy) / len(accuracy)

    k = 0

    def step():
        nonlocal k
        # forward
        total_loss, acc = loss()

        # backward
        model.zero_grad()
        total_loss.backward()

        # update (sgd)
        learning_rate = 1.0 - 0.9 * k / 100
        for p in model.parameters():
            p.data -= learning_rate * p.grad

        k = (k + 1) % 100
        return _float(total_loss.data), _float(acc)

    return step


def _float(x):
    return x.item() if hasattr(x, "item") else float(x)


def w2_optim(backend):
    """The step with micrograd-cpp's library: losses.svm_loss and optim.SGD ('cpp', 'pure')."""
    from micrograd_cpp import demo, losses, optim

    model, X, y = demo.setup(backend, W2_SEED)
    opt = optim.SGD(model.parameters(), lr=1.0)
    k = 0

    def step():
        nonlocal k
        total_loss, acc = losses.svm_loss(model, X, y)
        opt.zero_grad()
        total_loss.backward()
        opt.lr = 1.0 - 0.9 * k / 100
        opt.step()
        k = (k + 1) % 100
        return total_loss.data, acc

    return step


def w2_graph(model, X, y):
    """The notebook's loss graph, built by its code: (total_loss, scores)."""
    Value = type(model.parameters()[0])
    inputs = [list(map(Value, xrow)) for xrow in X]
    scores = list(map(model, inputs))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(y, scores, strict=True)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = 1e-4 * sum(p * p for p in model.parameters())
    return data_loss + reg_loss, scores


TAPE_OPS = {
    "+": "add",
    "*": "mul",
    "ReLU": "relu",
    "tanh": "tanh",
}  # micrograd's labels; '**k': pow


def build_tape_anchor(tmpdir):
    """bench/tape_anchor.cpp, the plainest C++ tape, built with $CXX (or c++) in tmpdir: the
    binary's path; ImportError if that fails."""
    binary = Path(tmpdir) / "tape_anchor"
    compiler = os.environ.get("CXX", "c++")
    source = Path(__file__).with_name("tape_anchor.cpp")
    build = [compiler, "-O2", "-std=c++17", "-ffp-contract=off", str(source), "-o", str(binary)]
    try:
        done = subprocess.run(build, capture_output=True, text=True)
    except OSError as error:
        raise ImportError(f"no C++ compiler ({compiler}): {error}") from None
    if done.returncode:
        raise ImportError(f"building the tape anchor failed: {done.stderr[-500:]}")
    return binary


def tape_of(root):
    """The anchor's input for root's graph, in micrograd's topological order: (text, nodes)."""
    order = _topological_order(root)
    index = {id(n): i for i, n in enumerate(order)}
    lines = [str(len(order))]
    for n in order:
        kids = [index[id(k)] for k in n._children] or [0]
        if not n._children:
            op, value = "leaf", n.data
        elif n._op.startswith("**"):
            op, value = "pow", float(n._op[2:])
        else:
            op, value = TAPE_OPS[n._op], n.data
        lines.append(f"{op} {kids[0]} {kids[-1]} {float.hex(value)}")
    return "\n".join(lines) + "\n", len(order)


def run_tape_anchor(binary, mode, rounds, tape):
    """The anchor's JSON result of `rounds` rounds of mode ('replay' or 'record') on tape."""
    done = subprocess.run(
        [str(binary), mode, str(rounds)], input=tape, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_tape_anchor(result, root):
    """Assert the anchor's root data and leaf grads equal root's graph's exactly (walking the
    graph gives every node a Python object: check after timing)."""
    assert float.fromhex(result["root"]) == root.data
    grads = [n.grad for n in _topological_order(root) if not n._children]
    assert grads == [float.fromhex(g) for g in result["leaf_grads"]]


class W1TapeAnchor:
    """W1's program on the tape anchor, recorded afresh and backpropagated each round, checked
    against the C++ engine's graph of the same program."""

    def __init__(self, binary, n_ops=W1_OPS):
        program = w1_program(n_ops)
        self.binary, self.n_ops = binary, n_ops
        self.root, self.leaves = w1_forward(*w1_setup(load("cpp"), program))
        self.root.backward()
        self.tape, self.nodes = tape_of(self.root)
        assert self.nodes == program.nodes()

    def measure(self, rounds):
        """(record, backward): medians over `rounds` in ns per op, checked."""
        result = run_tape_anchor(self.binary, "record", rounds, self.tape)
        check_tape_anchor(result, self.root)
        return result["record_ms"] * 1e6 / self.n_ops, result["backward_ms"] * 1e6 / self.n_ops


class TapeAnchor:
    """W2's graph on the tape anchor, next to micrograd-cpp's compiled replay of the same graph
    (on the same parameter leaves).

    run(rounds) replays it on the anchor: the median forward+backward ms; record(rounds) records
    it afresh and backpropagates it each round, as the notebook's step does: the median ms a
    round, checked. replay() compiles a fresh copy of the graph, as users do; check(root)
    asserts that the replay left the anchor's root data and leaf grads exactly (after timing).
    """

    def __init__(self, binary):
        from micrograd_cpp import demo

        self.binary = binary
        self.model, self.X, self.y = demo.setup(load("cpp"), W2_SEED)
        self.tape, self.nodes = tape_of(w2_graph(self.model, self.X, self.y)[0])
        self.result = None

    def run(self, rounds):
        self.result = run_tape_anchor(self.binary, "replay", rounds, self.tape)
        return self.result["forward_ms"] + self.result["backward_ms"]

    def record(self, rounds):
        result = run_tape_anchor(self.binary, "record", rounds, self.tape)
        root = w2_graph(self.model, self.X, self.y)[0]
        self.model.zero_grad()
        root.backward()
        check_tape_anchor(result, root)
        return result["step_ms"]

    def replay(self):
        """(root, program) of a fresh copy of the graph."""
        import micrograd_cpp

        root = w2_graph(self.model, self.X, self.y)[0]
        return root, micrograd_cpp.compile(root)

    def check(self, root):
        check_tape_anchor(self.result, root)

    def measure(self, rounds):
        """(anchor ms, replay ms): medians of forward+backward over `rounds`, both checked."""
        anchor_ms = self.run(rounds)
        root, prog = self.replay()
        times = []
        for _ in range(rounds):
            t0 = time_ns()
            prog.forward()
            t1 = time_ns()
            prog.zero_grad()
            t2 = time_ns()
            prog.backward()
            t3 = time_ns()
            times.append((t1 - t0 + t3 - t2) / 1e6)
        self.check(root)
        return anchor_ms, float(np.median(times))


def _topological_order(root):
    from micrograd_cpp import _core

    return _core.topological_order(root)


def w2_compiled(backend):
    """The notebook's step replayed: its loss graph (the notebook's code) built once and
    compiled; each step then runs prog.forward() (from the second step), zero_grad,
    prog.backward() and optim.SGD on the notebook's schedule, and losses.accuracy ('cpp',
    'pure')."""
    import micrograd_cpp
    from micrograd_cpp import demo, optim
    from micrograd_cpp.losses import accuracy

    model, X, y = demo.setup(backend, W2_SEED)
    loss, scores = w2_graph(model, X, y)
    prog = micrograd_cpp.compile(loss)
    opt = optim.SGD(model.parameters(), lr=1.0)
    k = 0

    def step():
        nonlocal k
        if k:
            prog.forward()
        acc = accuracy(scores, y)
        opt.zero_grad()
        prog.backward()
        opt.lr = 1.0 - 0.9 * k / 100
        opt.step()
        k = (k + 1) % 100
        return _float(prog.root.data), acc

    return step


def torch_scalar_mlp():
    """micrograd's MLP with one-element float64 tensors for Values (the same random init)."""
    from micrograd_cpp.pure import nn

    torch = _torch()

    def param(x):
        return torch.tensor([float(x)], dtype=torch.float64, requires_grad=True)

    class Neuron(nn.Neuron):
        _Value = staticmethod(param)

    class Layer(nn.Layer):
        _Neuron = Neuron

    class MLP(nn.MLP):
        _Layer = Layer

        def zero_grad(self):
            for p in self.parameters():
                p.grad = None

    return MLP


def torch_value(x):
    """An input of the torch scalar MLP: a one-element float64 tensor."""
    return _torch().tensor([float(x)], dtype=_torch().float64)


def w2_torch_batched():
    """The step as torch users write it: the data as a 100x2 tensor, nn.Linear layers (holding
    the notebook's initial weights), torch.optim.SGD; returns step() like w2_notebook's."""
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.pure import nn as pure_nn

    torch = _torch()
    X, y = make_moons(n_samples=100, noise=0.1, seed=W2_SEED)
    random.seed(W2_SEED)
    init = pure_nn.MLP(2, [16, 16, 1])
    linears = [torch.nn.Linear(2, 16), torch.nn.Linear(16, 16), torch.nn.Linear(16, 1)]
    with torch.no_grad():
        for linear, layer in zip(linears, init.layers, strict=True):
            linear.double()
            weights = [[w.data for w in n.w] for n in layer.neurons]
            linear.weight.copy_(torch.tensor(weights, dtype=torch.float64))
            linear.bias.copy_(torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64))
    relu = torch.nn.ReLU()
    model = torch.nn.Sequential(linears[0], relu, linears[1], relu, linears[2])
    Xt = torch.tensor(X, dtype=torch.float64)
    yt = torch.tensor(y, dtype=torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    k = 0

    def step():
        nonlocal k
        scores = model(Xt).squeeze(1)
        data_loss = torch.relu(1 - yt * scores).mean()
        reg_loss = 1e-4 * sum((p * p).sum() for p in model.parameters())
        total_loss = data_loss + reg_loss
        acc = ((yt > 0) == (scores > 0)).double().mean()
        opt.zero_grad()
        total_loss.backward()
        opt.param_groups[0]["lr"] = 1.0 - 0.9 * k / 100
        opt.step()
        k = (k + 1) % 100
        return total_loss.item(), acc.item()

    return step


@lru_cache(maxsize=1)
def _w2_oracle():
    be = load("pure")
    return w2_notebook(be.Value, be.MLP), []


def w2_reference(n):
    """The notebook's (loss, accuracy) for its first n steps, on the oracle."""
    step, history = _w2_oracle()
    while len(history) < n:
        history.append(step())
    return history[:n]


class Steps:
    """W2's training steps of one variant on one backend: variant 'notebook' (any backend),
    'optim' or 'compiled' ('cpp', 'pure') or 'batched' ('torch'). step() runs one step and
    returns its (loss, accuracy)."""

    def __init__(self, variant, backend):
        self.variant, self.name = variant, backend
        if variant == "batched":
            self.step = w2_torch_batched()
        elif variant == "optim":
            self.step = w2_optim(backend)
        elif variant == "compiled":
            self.step = w2_compiled(backend)
        else:
            be = load(backend)
            self.step = w2_notebook(torch_value if backend == "torch" else be.Value, be.MLP)

    def verify(self, history):
        """Assert the (loss, accuracy) of the steps run so far, in order."""
        reference = w2_reference(min(len(history), W2_CHECKED_STEPS))
        for k, (loss, acc) in enumerate(history):
            if k >= W2_CHECKED_STEPS:
                assert math.isfinite(loss) and 0 <= acc <= 1, (k, loss, acc)
                continue
            want_loss, want_acc = reference[k]
            assert_close(self.name, loss, want_loss, f"loss of step {k}")
            if self.name in EXACT:
                assert acc == want_acc, (k, acc, want_acc)
            else:  # the notebook's accuracy on tensors is a float32
                assert math.isclose(acc, want_acc, abs_tol=1e-6), (k, acc, want_acc)

    def seconds(self):
        return STEP_S["batched" if self.variant == "batched" else self.name]


def w2_nodes():
    """The number of nodes in one step's graph (the notebook's first step, on the oracle)."""
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.losses import svm_loss
    from micrograd_cpp.pure import engine, nn

    random.seed(W2_SEED)
    X, y = make_moons(100, noise=0.1, seed=W2_SEED)
    total_loss, _ = svm_loss(nn.MLP(2, [16, 16, 1]), X, y)
    return len(engine.topological_order(total_loss))


# ---------------------------------------------------------------------------------------------
# W3: a deep chain

W3_DEPTHS = (10**3, 10**4, 10**5, 10**6)


def w3_skip_reason(backend, n):
    """Why backend does not run W3 at depth n, or None."""
    if backend in UPSTREAM and n > 10**5:
        return (
            "micrograd's recursive topological sort would recurse 2e6 levels deep, "
            "and its 4e6 nodes take ~3 GB"
        )
    if backend == "torch" and n > 10**5:
        return "torch: 2e6 one-element tensor ops take ~20 s a round"
    return None


def w3_forward(Value, n):
    """x = 0.5 and y = x*1.0001 + 0.0001 applied n times: (y, [x])."""
    x = Value(0.5)
    y = x
    for _ in range(n):
        y = y * 1.0001 + 0.0001
    return y, [x]


@lru_cache(maxsize=8)
def w3_expected(n):
    """(y, dy/dx), computed in floats as the engines compute them."""
    data, grad = 0.5, 1.0
    for _ in range(n):
        data = data * 1.0001 + 0.0001
        grad = 1.0001 * grad
    return data, grad


def w3_pass(be, n):
    """W3 at depth n; its graph has 4n + 1 nodes (x; per step two constants and two ops), the
    count timings are divided by."""
    return Pass(
        be,
        4 * n + 1,
        setup=lambda: (be.Value, n),
        forward=w3_forward,
        want_data=lambda: w3_expected(n)[0],
        want_grads=lambda: [w3_expected(n)[1]],
    )


# ---------------------------------------------------------------------------------------------
# W4: resident memory per node of W1's graph

W4_OPS = 1_000_000
W4_BACKENDS = ("cpp", "pure", "micrograd", "torch")


def rss():
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def w4_measure(backend, n_ops):
    """Build W1's graph of n_ops ops on backend in this process and measure its memory.

    Bytes are divided by the nodes of micrograd's graph of the program on every backend, so
    ratios are ratios of total memory. The collector is off while building (the graph makes no
    garbage); the leaves and the program exist before the first reading.
    """
    be = load(backend)
    program = w1_program(n_ops)
    leaves, steps = w1_setup(be, program)
    gc.collect()
    gc.disable()
    before = rss()
    root, _ = w1_forward(leaves, steps)
    after = rss()
    counted = None
    if backend in EXACT:
        from micrograd_cpp import _core
        from micrograd_cpp.pure import engine

        counted = len((_core if backend == "cpp" else engine).topological_order(root))
    nodes = program.nodes()
    return {
        "backend": backend,
        "ops": n_ops,
        "nodes": nodes,
        "counted_nodes": counted,
        "bytes": after - before,
        "bytes_per_node": (after - before) / nodes,
        "data": be.data(root),
        "want_data": program.result,
    }


def w4_run(backend, n_ops=W4_OPS):
    """w4_measure in a fresh interpreter; ImportError when the backend is not installed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "memory", backend, str(n_ops)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if out.returncode == 3:
        raise ImportError(out.stderr.strip())
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def w4_check(result):
    """Assert a W4 measurement's graph is right and its memory plausible; returns bytes/node."""
    name = result["backend"]
    assert_close(name, result["data"], result["want_data"], "forward data")
    if result["counted_nodes"] is not None:
        assert result["counted_nodes"] == result["nodes"]
    assert 0 < result["bytes_per_node"] < 100_000, result
    return result["bytes_per_node"]


# ---------------------------------------------------------------------------------------------
# W6: resident memory before, at the peak and after dropping a graph, in a fresh interpreter

W6_SHAPES = ("chain", "wide", "mlp")
W6_SIZES = (100_000, 1_000_000, 10_000_000)
W6_BACKENDS = ("cpp", "pure", "micrograd")
# Sizes a backend is not run at on this 24 GB, 2-core machine: minutes a graph, GBs of memory.
W6_LARGEST = {"cpp": 10_000_000, "pure": 1_000_000, "micrograd": 1_000_000}
MLP_NODES = 65_818  # W2's graph: the demo's loss over 100 moons


def w6_build(be, shape, n_nodes):
    """A graph of about n_nodes nodes: returns (root, what keeps its leaves alive)."""
    V = be.Value
    if shape == "chain":  # W3, 4 nodes a step
        root = x = V(1.0)
        for _ in range(n_nodes // 4):
            root = root * 1.0001 + 0.0001
        return root, x
    if shape == "wide":  # sum() of as many leaves: a leaf and a '+' each
        xs = [V(i * 1e-6) for i in range(n_nodes // 2)]
        return sum(xs), xs
    if shape == "mlp":  # the demo's loss graph, built again and again, summed
        from micrograd_cpp.datasets import make_moons

        X, y = make_moons(n_samples=100, noise=0.1, seed=1337)
        model = be.MLP(2, [16, 16, 1])
        total = 0.0
        for _ in range(max(1, round(n_nodes / MLP_NODES))):
            scores = [model(list(map(V, xrow))) for xrow in X]
            losses = [(1 + -float(yi) * si).relu() for yi, si in zip(y, scores, strict=True)]
            data_loss = sum(losses) * (1.0 / len(losses))
            reg_loss = 1e-4 * sum(p * p for p in model.parameters())
            total = data_loss + reg_loss + total
        return total, model
    raise ValueError(f"unknown shape {shape!r}")


def _peak_rss():
    """The process's resident high-water mark in bytes (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def w6_measure(backend, shape, n_nodes):
    """Build, backpropagate and drop a graph in this (fresh) process: resident memory before, at
    the peak and after, the collector on as users run it and run once after the drop."""
    be = load(backend)
    small, keep = w6_build(be, shape, 1000)  # the code paths warm, the imports done
    be.backward(small)
    del small, keep
    gc.collect()
    before = rss()
    root, keep = w6_build(be, shape, n_nodes)
    be.backward(root)
    data, grad = be.data(root), be.grad(root)
    peak = _peak_rss()
    del root, keep
    gc.collect()
    after = rss()
    pool = None
    if backend == "cpp":
        from micrograd_cpp import _core

        pool = _core._pool_stats() if hasattr(_core, "_pool_stats") else None
    return {
        "backend": backend,
        "shape": shape,
        "nodes": n_nodes,
        "before": before,
        "peak": max(peak, before),
        "after": after,
        "data": data,
        "grad": grad,
        "pool": pool,
    }


def w6_run(backend, shape, n_nodes):
    """w6_measure in a fresh interpreter; ImportError when the backend is not installed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "dropped", backend, shape, str(n_nodes)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode == 3:
        raise ImportError(out.stderr.strip())
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def w6_check(result):
    """Assert a W6 measurement computed something and gave its memory back (within 20 MiB after
    a graph up to 1e6 nodes, 50 MiB after a bigger one, for micrograd-cpp); returns MiB
    (before, peak - before, after - before)."""
    assert result["grad"] == 1.0 and math.isfinite(result["data"]), result
    mib = 2**20
    grown, kept = result["peak"] - result["before"], result["after"] - result["before"]
    if result["backend"] == "cpp":
        assert kept < (20 if result["nodes"] <= 1_000_000 else 50) * mib, result
    return result["before"] / mib, grown / mib, kept / mib


def main(argv):
    if argv[:1] == ["memory"] and len(argv) == 3:
        name, measure = argv[1], lambda: w4_measure(argv[1], int(argv[2]))
    elif argv[:1] == ["dropped"] and len(argv) == 4:
        name, measure = argv[1], lambda: w6_measure(argv[1], argv[2], int(argv[3]))
    else:
        sys.exit(
            "usage: python workloads.py memory BACKEND N_OPS\n"
            "       python workloads.py dropped BACKEND SHAPE N_NODES"
        )
    try:
        load(name)
    except ImportError as error:
        print(error, file=sys.stderr)
        sys.exit(3)
    print(json.dumps(measure()))


if __name__ == "__main__":
    main(sys.argv[1:])
