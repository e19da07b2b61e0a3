"""W1: a seeded random program of scalar ops, each taking the previous result as first operand;
and its compiled replay."""

import math
import operator
import random
import time
from functools import lru_cache
from types import SimpleNamespace

from harness import COST_NS, REL_TOL, Pass, load
from tape import check_tape_anchor, run_tape_anchor, tape_of

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


def w1_forward_on_floats(n_ops):
    """ns per op of w1_forward over the program of n_ops ops on plain Python floats, with
    relu a Python function and tanh math's: the interpreter's floor for that loop."""

    def relu(x):
        return 0.0 if x < 0 else x

    floats = SimpleNamespace(Value=float, relu=relu, tanh=math.tanh)
    leaves, steps = w1_setup(floats, w1_program(n_ops))
    t0 = time.perf_counter_ns()
    root, _ = w1_forward(leaves, steps)
    elapsed = time.perf_counter_ns() - t0
    assert math.isclose(root, w1_program(n_ops).result, rel_tol=REL_TOL)  # '/' is r / b here
    return elapsed / n_ops


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
