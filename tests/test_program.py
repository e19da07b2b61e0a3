"""compile(root): replaying a graph equals rebuilding it, bit for bit, on both backends.

A replay (prog.forward(), prog.backward()) must leave every node with the data and grad that
building the graph anew from the same leaves and calling backward() gives: across parameter
updates, changed inputs, relu sign changes and ops that raise. The C++ Program and the pure
one (its oracle) must agree on any sequence of calls, also mixed with backward(), grads set by
hand and other programs over the same nodes. Every comparison is exact: floats by their bits
(every nan alike: see bits()).
"""

import math
import operator
import os
import random
import subprocess
import sys
import textwrap
import warnings

import pytest
from helpers import cpp_nn
from hypothesis import example, given
from hypothesis import strategies as st

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    import micrograd_cpp
    from micrograd_cpp import losses
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.pure import engine as pure_engine
    from micrograd_cpp.pure import nn as pure_nn
    from micrograd_cpp.pure import program as pure_program

compile_graph = micrograd_cpp.compile


def bits(x):
    """x exactly: its hex form (so -0.0 != 0.0), with every nan alike.

    Which nan an op on two nans returns (its sign and payload) depends on the order in which
    the machine code takes the operands, which Python leaves open: CPython's own `a + b` gives
    one operand's nan before the interpreter specialises the instruction and the other's after.
    """
    return float.hex(x) if x == x else "nan"


def topological_order(root):
    """The graph under root, children first, as its own backend sorts it."""
    if isinstance(root, pure_engine.Value):
        return pure_engine.topological_order(root)
    from micrograd_cpp import _core

    return _core.topological_order(root)


def state(nodes):
    """Each node's op, data and grad, exactly."""
    return [(n._op, bits(n.data), bits(n.grad)) for n in nodes]


def graph_state(root):
    return state(topological_order(root))


def outcome(fn, *args):
    """'ok', or the type and message of the exception fn raised."""
    try:
        fn(*args)
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    return "ok"


def nn_of(V):
    return pure_nn if V is pure_engine.Value else cpp_nn()


def test_compile_picks_the_backend(backends):
    cpp, pure = backends
    assert type(compile_graph(cpp(1.0) * 2)).__module__ == "micrograd_cpp._core"
    assert isinstance(compile_graph(pure(1.0) * 2), pure_program.Program)


# ---------------------------------------------------------------------------------------------
# Rebuilding: the graph under a root made anew from its leaves' current data


def exponent(label):
    """The exponent of a '**' node from its label ('**2', '**-1', '**0.5')."""
    try:
        return int(label)
    except ValueError:
        return float(label)


def apply(op, kids):
    """The node `op` makes from kids, made by the engine as user code makes it."""
    if op == "+":
        return kids[0] + kids[1]
    if op == "*":
        return kids[0] * kids[1]
    if op.startswith("**"):
        return kids[0] ** exponent(op[2:])
    return getattr(kids[0], "relu" if op == "ReLU" else op)()


def rebuild(V, made):
    """The graph of the nodes `made` built again, node by node in that order, from fresh
    leaves with the current data of its: ({id(old node): its new node}, the exception that
    stopped the building or None)."""
    new = {}
    for n in made:
        kids = [new[id(c)] for c in n._children]
        try:
            new[id(n)] = apply(n._op, kids) if kids else V(n.data)
        except Exception as e:
            return new, e
    return new, None


def made_order(steps, root):
    """The nodes under root in the order a program made them, given the nodes each of its steps
    made last, in order: a step's nodes come after the earlier steps', and among themselves
    (an operator's, a fused sum's or dot's) children first, as the engines make them."""
    under, seen, made = {id(n) for n in topological_order(root)}, set(), []
    for step in steps:
        for n in topological_order(step):
            if id(n) in under and id(n) not in seen:
                seen.add(id(n))
                made.append(n)
    return made


def check_replay_equals_rebuild(V, prog, made=None):
    """Replay prog from its leaves' current data (forward, zero_grad, backward) and rebuild its
    graph from the same data (build in the order its nodes were `made`, by default the
    topological one; backward): the same exceptions and the same numbers."""
    order = topological_order(prog.root)
    before = state(order)
    rebuilt, build_error = rebuild(V, order if made is None else made)
    forward = outcome(prog.forward)
    # The recomputed nodes hold the rebuilt ones' data and grad (0); leaves keep their grads;
    # the nodes from a failing one on (in the order they were made) are untouched.
    recomputed = [
        (op, bits(rebuilt[id(n)].data), bits(rebuilt[id(n)].grad) if n._children else grad)
        if id(n) in rebuilt
        else (op, data, grad)
        for (op, data, grad), n in zip(before, order, strict=True)
    ]
    assert state(order) == recomputed
    if build_error is not None:
        assert forward == f"{type(build_error).__name__}: {build_error}"
        return forward
    assert forward == "ok"
    prog.zero_grad()
    replayed = outcome(prog.backward)
    assert replayed == outcome(rebuilt[id(prog.root)].backward)
    # also after a backward that raised part way
    assert state(order) == state([rebuilt[id(n)] for n in order])
    return replayed


# ---------------------------------------------------------------------------------------------
# An MLP's loss over the moons, replayed through training


def moons_loss(model, inputs, y):
    return losses.svm_loss_graph(model, inputs, y)[0]


def moons(V, n=12, seed=5):
    X, y = make_moons(n, noise=0.1, seed=seed)
    random.seed(seed)
    model = nn_of(V).MLP(2, [6, 6, 1])
    inputs = [list(map(V, row)) for row in X]
    return model, inputs, y.tolist()


def sgd(model, lr):
    for p in model.parameters():
        p.data -= lr * p.grad


def relu_signs(root):
    return [n.data > 0 for n in topological_order(root) if n._op == "ReLU"]


def test_training_replay_equals_rebuild(backend):
    """Parameters updated by SGD between replays: each step's graph equals the rebuilt one."""
    model, inputs, y = moons(backend)
    loss = moons_loss(model, inputs, y)
    prog = compile_graph(loss)
    losses_seen = []
    for k in range(5):
        if k:
            prog.forward()
        prog.zero_grad()
        prog.backward()
        replayed = graph_state(loss)
        model.zero_grad()
        rebuilt = moons_loss(model, [[backend(x.data) for x in row] for row in inputs], y)
        rebuilt.backward()
        assert replayed == graph_state(rebuilt)
        losses_seen.append(loss.data)
        sgd(model, 0.5)
    assert len(set(losses_seen)) == 5  # the parameters did change


def test_training_replay_with_the_demos_zero_grad(backend):
    """model.zero_grad() before prog.backward(), as the demo does: parameters and inner nodes
    match a rebuild (the inputs' and constants' grads accumulate, as they would in any graph
    backpropagated twice)."""
    model, inputs, y = moons(backend)
    loss = moons_loss(model, inputs, y)
    prog = compile_graph(loss)
    params = {id(p) for p in model.parameters()}
    for k in range(4):
        if k:
            prog.forward()
        model.zero_grad()
        prog.backward()
        replayed = topological_order(loss)
        model.zero_grad()
        rebuilt = moons_loss(model, [[backend(x.data) for x in row] for row in inputs], y)
        rebuilt.backward()
        rebuilt = topological_order(rebuilt)
        for a, b in zip(replayed, rebuilt, strict=True):
            assert bits(a.data) == bits(b.data)
            if a._children or id(a) in params:
                assert bits(a.grad) == bits(b.grad), a._op
        sgd(model, 1.0 - 0.9 * k / 100)


def test_changed_inputs_flip_relus(backend):
    """New inputs between replays, chosen so that pre-activations change sign."""
    model, inputs, y = moons(backend)
    loss = moons_loss(model, inputs, y)
    prog = compile_graph(loss)
    rng = random.Random(11)
    signs = relu_signs(loss)
    for scale in (-1.0, 3.0, -0.25, 0.0, -0.0):
        for row in inputs:
            for x in row:
                x.data = scale * x.data + rng.uniform(-1, 1) * (scale != 0)
        check_replay_equals_rebuild(backend, prog)
        if scale == -1.0:
            assert relu_signs(loss) != signs  # some units switched on or off


def test_relu_at_and_around_zero(backend):
    """relu(-0.0) is -0.0 and its grad 0, as in micrograd; a replay crosses zero both ways."""
    w, x, b = backend(2.0), backend(1.0), backend(-1.0)
    prog = compile_graph((w * x + b).relu() * w)
    for value in (1.0, 0.5, 0.25, -0.5, 0.0, -0.0, 3.0, float("inf"), -float("inf"), 2.0):
        x.data = value
        check_replay_equals_rebuild(backend, prog)


def test_cpp_and_pure_train_alike(backends):
    """The same training by replay on both backends: every node the same at every step."""
    (cpp_model, cpp_inputs, y), (pure_model, pure_inputs, _) = (moons(V) for V in backends)
    progs = [
        compile_graph(moons_loss(m, i, y))
        for m, i in ((cpp_model, cpp_inputs), (pure_model, pure_inputs))
    ]
    for k in range(4):
        for prog, model in zip(progs, (cpp_model, pure_model), strict=True):
            if k:
                prog.forward()
            model.zero_grad()
            prog.backward()
            sgd(model, 0.5)
        assert graph_state(progs[0].root) == graph_state(progs[1].root)
        assert [p.data for p in cpp_model.parameters()] == [p.data for p in pure_model.parameters()]


# ---------------------------------------------------------------------------------------------
# Random programs (as in test_differential): built, compiled, replayed on new leaf data

BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
UNARY = ("neg", "relu", "tanh", "exp", "log", "sigmoid", "exp", "log")  # those that raise twice
SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-200, 1e200, 709.0, 710.0, float("inf"), float("nan")]
numbers = st.one_of(st.floats(-3, 3), st.sampled_from(SPECIAL), st.floats())
EXPONENTS = [2, 3, -1, -2, 0, 1, 0.5, -0.5, 1.5, 2.0, 1 / 3]


class Ref(int):
    """An earlier node, by index (modulo the number of nodes when the step runs)."""


refs = st.one_of(st.integers(-3, -1), st.integers(0, 2**10)).map(Ref)  # often a recent node
operand = st.one_of(refs, refs, st.floats(-3, 3), st.sampled_from([0, 1, 2, -1, 0.5]))
steps = st.one_of(
    st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), refs, operand),
    st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), operand, refs),
    st.tuples(st.just("pow"), refs, st.sampled_from(EXPONENTS)),
    st.tuples(st.just("unary"), st.sampled_from(UNARY), refs),
)
leaf_data = st.lists(numbers, min_size=1, max_size=4)


# micrograd_cpp.sum and dot: on C++, the nodes they make inside have no Python object
fused = st.one_of(
    st.tuples(st.just("sum"), st.lists(refs, min_size=1, max_size=5)),
    st.tuples(st.just("dot"), st.lists(st.tuples(refs, refs), min_size=1, max_size=5)),
)
# steps whose ops cannot raise: a program of them keeps nothing for a redo
safe_steps = st.one_of(
    st.tuples(st.just("bin"), st.sampled_from(["+", "-", "*"]), refs, operand),
    st.tuples(st.just("bin"), st.sampled_from(["+", "-", "*"]), operand, refs),
    st.tuples(st.just("unary"), st.sampled_from(["neg", "relu", "tanh", "sigmoid"]), refs),
    fused,
    fused,
)


def build(V, leaves, program, whole=False):
    """The program on backend V: (its leaves, every node it made), the last node its root;
    with whole, a last node that sums them all. Steps that raise make no node."""
    nodes = [V(x) for x in leaves]
    for s in program:
        node = lambda r: nodes[r % len(nodes)] if isinstance(r, Ref) else r  # noqa: E731
        try:
            if s[0] == "sum":
                nodes.append(micrograd_cpp.sum([node(r) for r in s[1]]))
            elif s[0] == "dot":
                pairs = [(node(a), node(b)) for a, b in s[1]]
                nodes.append(micrograd_cpp.dot(*zip(*pairs, strict=True)))
            elif s[0] == "bin":
                nodes.append(BINARY[s[1]](node(s[2]), node(s[3])))
            elif s[0] == "pow":
                nodes.append(node(s[1]) ** s[2])
            elif s[1] == "neg":
                nodes.append(-node(s[2]))
            else:
                nodes.append(getattr(node(s[2]), s[1])())
        except (ArithmeticError, ValueError):
            pass
    if whole:
        nodes.append(sum(nodes[1:], nodes[0]))
    return nodes[: len(leaves)], nodes


@given(
    leaf_data,
    st.lists(steps, min_size=1, max_size=25),
    st.booleans(),
    st.lists(leaf_data, max_size=3),
)
def test_random_programs_replay_equals_rebuild(backend, leaves, program, whole, rounds):
    """Random graphs replayed from new leaf data, some of which make an op raise."""
    replay_random_program(backend, leaves, program, whole, rounds)


def replay_random_program(backend, leaves, program, whole, rounds):
    inputs, nodes = build(backend, leaves, program, whole)
    prog = compile_graph(nodes[-1])
    assert len(prog) == len(topological_order(nodes[-1]))
    made = made_order(nodes, nodes[-1])
    check_replay_equals_rebuild(backend, prog, made)  # unchanged leaves
    for data in rounds:
        for x, value in zip(inputs, data, strict=False):
            x.data = value
        check_replay_equals_rebuild(backend, prog, made)


@given(
    leaf_data,
    st.lists(safe_steps, min_size=1, max_size=40),
    st.booleans(),
    st.lists(leaf_data, max_size=3),
)
def test_random_programs_without_raising_ops_replay_equals_rebuild(
    backend, leaves, program, whole, rounds
):
    """The same for graphs with many shared nodes and no op that can raise, which replay in
    an order of their own with nothing to redo: every grad still sums its terms in micrograd's
    order."""
    replay_random_program(backend, leaves, program, whole, rounds)


def pairwise_sum(nodes, made):
    """A balanced tree of '+' over nodes (their number a power of 2), its nodes added to made."""
    while len(nodes) > 1:
        nodes = [nodes[k] + nodes[k + 1] for k in range(0, len(nodes), 2)]
        made.extend(nodes)
    return nodes[0]


WIDTH = 16
# What every lane of a wide graph does to its own node: the same ops at the same depths, so that
# the C++ program replays them as runs of one op, raising ops included
lane_steps = st.lists(
    st.one_of(
        st.tuples(st.just("unary"), st.sampled_from(UNARY)),
        st.tuples(st.just("pow"), st.sampled_from(EXPONENTS)),
        st.tuples(st.just("bin"), st.sampled_from(list(BINARY)), st.sampled_from([0.5, 2, -1, 0])),
        st.tuples(st.just("mix"), st.sampled_from(list(BINARY))),  # with the lane before's node
    ),
    min_size=1,
    max_size=4,
)


def build_lanes(V, steps):
    """WIDTH lanes, made one after the other, each applying steps to a leaf of its own (a lane
    stops at a step that raises), summed by a tree of '+': (the leaves, the nodes in the order
    they were made)."""
    leaves = [V(0.25 + i / 8) for i in range(WIDTH)]
    made, ends, previous = list(leaves), [], []
    for x in leaves:
        lane = [x]
        for k, s in enumerate(steps):
            node = lane[-1]
            try:
                if s[0] == "unary":
                    node = -node if s[1] == "neg" else getattr(node, s[1])()
                elif s[0] == "pow":
                    node = node ** s[1]
                elif s[0] == "bin":
                    node = BINARY[s[1]](node, s[2])
                else:
                    other = previous[min(k, len(previous) - 1)] if previous else node
                    node = BINARY[s[1]](node, other)
            except (ArithmeticError, ValueError):
                break
            lane.append(node)
            made.append(node)
        ends.append(lane[-1])
        previous = lane
    root = pairwise_sum(ends, made)
    return leaves, made_order(made, root)


@given(lane_steps, st.lists(st.lists(numbers, min_size=WIDTH, max_size=WIDTH), max_size=3))
@example([("pow", 0.5), ("unary", "exp")], [[1.0] * 5 + [0.0] + [1.0] * 10])  # d(0**0.5)
@example([("unary", "exp"), ("unary", "log")], [[-1000.0, 1000.0] + [1.0] * 14])
def test_wide_graphs_with_raising_ops_replay_equals_rebuild(backend, steps, rounds):
    """Graphs whose ops come in runs, replayed from new leaf data that makes some lanes raise in
    the middle of the graph, forward or backward: the same exception and the same numbers as a
    rebuild, though the runs meet the nodes in another order than micrograd."""
    leaves, made = build_lanes(backend, steps)
    prog = compile_graph(made[-1])
    check_replay_equals_rebuild(backend, prog, made)
    for data in rounds:
        for x, value in zip(leaves, data, strict=True):
            x.data = value
        check_replay_equals_rebuild(backend, prog, made)


def test_a_graph_with_raising_ops_replays_in_runs(backends):
    """64 lanes of x**-1, log, exp, summed by a tree of '+': the C++ program loops over 4 runs
    of one op ('**', log, exp, then the levels of '+'). Rebuilding fails first at lane 3's log,
    the runs at lane 10's '**' (they compute every '**' first); the replay raises the rebuild's
    error and leaves its state, then does the same for a backward that raises, on both
    backends."""
    states = []
    for V in backends:
        xs = [V(1 + i / 64) for i in range(64)]
        made = list(xs)
        ends = []
        for x in xs:
            p = x**-1
            lg = p.log()
            ends.append(lg.exp())
            made += [p, lg, ends[-1]]
        prog = compile_graph(pairwise_sum(ends, made))
        made = made_order(made, prog.root)
        if V is not pure_engine.Value:
            assert prog._runs == 4
        xs[3].data, xs[10].data = -1.0, 0.0
        assert check_replay_equals_rebuild(V, prog, made) == "ValueError: math domain error"
        states.append(graph_state(prog.root))
        xs[3].data, xs[10].data = 0.5, 2.0
        xs[7].data, xs[20].data = 1e-160, 1e-170  # d(x**-1) = -x**-2 overflows
        assert check_replay_equals_rebuild(V, prog, made).startswith("OverflowError")
        states.append(graph_state(prog.root))
        xs[7].data, xs[20].data = 0.25, 4.0
        assert check_replay_equals_rebuild(V, prog, made) == "ok"
        states.append(graph_state(prog.root))
    assert states[:3] == states[3:]


# ---------------------------------------------------------------------------------------------
# Nodes without a Python object: a replay stores their results only when someone looks

HIDDEN_ACTIONS = st.one_of(
    st.tuples(st.sampled_from(["data", "grad"]), st.integers(0, 3).map(Ref), numbers),  # a leaf
    st.tuples(st.sampled_from(["forward", "forward", "backward", "zero_grad"]), st.integers(0, 1)),
    st.tuples(st.just("walk"), st.lists(st.integers(0, 5), max_size=8)),  # down from the root
    st.tuples(st.just("walked_backward"), st.lists(st.integers(0, 5), max_size=8)),
    st.tuples(st.just("recompile"), st.integers(0, 1)),  # drop a program, compile its root again
)


def walk(root, path):
    """The nodes on a path down from root, a child by index (modulo their number) each step."""
    seen = [root]
    for k in path:
        kids = seen[-1]._children
        if not kids:
            break
        seen.append(kids[k % len(kids)])
    return seen


def act_on_hidden(inputs, roots, progs, seen, action):
    kind = action[0]
    if kind in ("data", "grad"):
        setattr(inputs[action[1] % len(inputs)], kind, action[2])
    elif kind == "walk":
        seen += walk(roots[0], action[1])
    elif kind == "walked_backward":
        node = walk(roots[1], action[1])[-1]
        seen.append(node)
        node.backward()
    elif kind == "recompile":
        progs[action[1]] = None  # the program goes first
        progs[action[1]] = compile_graph(roots[action[1]])
    else:
        getattr(progs[action[1]], kind)()


def act_on_both(sides, actions):
    """Each action on both (inputs, roots, programs, nodes reached) sides, C++'s and the
    oracle's: after each, the same outcome and what the user can see equal; at the end, every
    node under the second root equal."""
    for k, action in enumerate(actions):
        done = [outcome(act_on_hidden, *side, action).split(":")[0] for side in sides]
        assert done[0] == done[1], (k, action)
        cpp, pure = (state(inputs + roots + seen) for inputs, roots, _, seen in sides)
        assert cpp == pure, (k, action)
    cpp, pure = (graph_state(roots[1]) for _, roots, _, _ in sides)
    assert cpp == pure


@given(
    leaf_data,
    st.booleans().flatmap(
        lambda safe: st.lists(
            safe_steps if safe else st.one_of(steps, fused), min_size=1, max_size=30
        )
    ),
    refs,
    refs,
    st.lists(HIDDEN_ACTIONS, min_size=1, max_size=25),
)
def test_nodes_without_python_objects(backends, leaves, program, i, j, actions):
    """Graphs made partly by micrograd_cpp.sum and dot, whose inner nodes have no Python object
    on C++, and two programs sharing them, replayed in any order, with nodes reached later
    (walking _children, which gives them an object) and Value.backward() from them: what the
    user can see after each call (leaves, roots, nodes reached) and, at the end, every node
    equal the oracle's."""
    sides = []
    for V in backends:
        inputs, nodes = build(V, leaves, program)
        root = nodes[-1]
        other = micrograd_cpp.dot([nodes[i % len(nodes)], root], [root, nodes[j % len(nodes)]])
        roots = [root, other]
        sides.append((inputs, roots, [compile_graph(r) for r in roots], []))
    act_on_both(sides, actions)


def test_a_layers_inner_nodes_show_the_replayed_numbers(backends):
    """The demo's graph: after replays whose results went only to the nodes users hold, the
    nodes inside the layers (no Python object until walked) hold what a rebuild gives."""
    states = []
    for V in backends:
        model, inputs, y = moons(V)
        loss = moons_loss(model, inputs, y)
        prog = compile_graph(loss)
        for k in range(3):
            if k:
                prog.forward()
            model.zero_grad()
            prog.backward()
            sgd(model, 0.5)
        prog.forward()
        model.zero_grad()
        prog.backward()
        states.append(graph_state(loss))
        model.zero_grad()
        rebuilt = moons_loss(model, [[V(x.data) for x in row] for row in inputs], y)
        rebuilt.backward()
        inner = [(op, data, grad) for op, data, grad in graph_state(rebuilt) if op]
        assert [s for s in states[-1] if s[0]] == inner
    assert states[0] == states[1]


def test_a_program_starts_from_the_grads_others_left_inside(backends):
    """Nodes inside a fused sum, shared by two programs and a Value.backward(): each pass
    starts from the grads the others left in them, as on the oracle."""
    results = []
    for V in backends:
        w, x = V(0.5), V(-2.0)
        inner = micrograd_cpp.dot([w, x, w], [x, w, w])
        root = inner.tanh()
        other = root * 2 + inner * w
        p, q = compile_graph(root), compile_graph(other)
        log = []
        for call in (
            p.forward,
            q.backward,
            p.backward,
            other.backward,
            p.backward,
            q.forward,
            p.backward,
            q.backward,
            p.zero_grad,
            q.backward,
        ):
            call()
            log.append(state([w, x, root, other]))  # walking would give every node an object
        results.append((log, graph_state(other)))
    assert results[0] == results[1]


def test_a_replay_inside_a_python_backward(backends):
    """A user-made node's _backward that replays a program over nodes the running backward()
    visits next: backward() goes on from the replayed numbers, as on the oracle."""
    results = []
    for V in backends:
        w, x = V(0.5), V(-2.0)
        inner = micrograd_cpp.dot([w, x, w], [x, w, w])
        prog = compile_graph(inner.tanh())
        out = V(inner.data, (inner,), "custom")

        def _backward(out=out, inner=inner, x=x, prog=prog):
            x.data = 1.5
            prog.forward()
            inner.grad += 3 * out.grad

        out._backward = _backward
        top = out * w
        top.backward()
        results.append(graph_state(top))
    assert results[0] == results[1]


def test_dropping_an_unsettled_program_stores_its_results(backend):
    """A program dropped right after a replay: the nodes it leaves behind hold the replayed
    numbers."""
    w, x = backend(0.5), backend(-2.0)
    hidden = micrograd_cpp.dot([w, x, w], [x, w, w])  # two products and two sums inside
    root = hidden.tanh()
    prog = compile_graph(root)
    x.data = 3.0
    prog.forward()
    prog.backward()
    del prog
    w2, x2 = backend(0.5), backend(3.0)
    rebuilt = micrograd_cpp.dot([w2, x2, w2], [x2, w2, w2]).tanh()
    rebuilt.backward()
    assert graph_state(root) == graph_state(rebuilt)


# ---------------------------------------------------------------------------------------------
# Ops that raise


def around(x, y, fragile):
    """A graph with nodes before and after the fragile one, in topological order."""
    return (y * 3 + fragile(x)) * y.tanh()


FORWARD_FAILURES = {
    "log(0)": (lambda x: x.log(), 0.0, ValueError),
    "log(-1)": (lambda x: x.log(), -1.0, ValueError),
    "0**-1": (lambda x: 1 / x, 0.0, ZeroDivisionError),
    "0.0**-2": (lambda x: x**-2, -0.0, ZeroDivisionError),
    "exp overflow": (lambda x: x.exp(), 710.0, OverflowError),
    "pow overflow": (lambda x: x**3, 1e200, OverflowError),
    "negative to a fractional power": (lambda x: x**0.5, -4.0, ValueError),
}


@pytest.mark.parametrize("case", list(FORWARD_FAILURES))
def test_a_forward_that_raises(backends, case):
    """The replay raises what rebuilding raises; the nodes before the failing one hold new
    values, the others their old ones; both backends end in the same state; a later replay
    from good data recovers."""
    fragile, bad, error = FORWARD_FAILURES[case]
    states, messages = [], []
    for V in backends:
        x, y = V(2.0), V(0.5)
        prog = compile_graph(around(x, y, fragile))
        x.data, y.data = bad, -1.5
        with pytest.raises(error) as raised:
            prog.forward()
        messages.append(str(raised.value))
        assert check_replay_equals_rebuild(V, prog) == f"{error.__name__}: {raised.value}"
        states.append(graph_state(prog.root))
        x.data = 2.5
        assert check_replay_equals_rebuild(V, prog) == "ok"
        states.append(graph_state(prog.root))
    assert states[:2] == states[2:] and messages[0] == messages[1]


BACKWARD_FAILURES = {
    "d(x**0.5) at 0": (lambda x: x**0.5, 0.0, ZeroDivisionError),
    "d(x**-1) overflows": (lambda x: x**-1, 1e-200, OverflowError),
    "d(x**-0.5) overflows": (lambda x: x**-0.5, 1e-300, OverflowError),
}


@pytest.mark.parametrize("case", list(BACKWARD_FAILURES))
def test_a_backward_that_raises(backends, case):
    """Replayed forward fine, then a local rule raises: the same exception as a rebuilt graph's
    backward, and the same grads accumulated so far, on both backends."""
    fragile, bad, error = BACKWARD_FAILURES[case]
    states = []
    for V in backends:
        x, y = V(2.0), V(0.5)
        prog = compile_graph(around(x, y, fragile))
        prog.backward()
        x.data = bad
        assert check_replay_equals_rebuild(V, prog).startswith(error.__name__)
        states.append(graph_state(prog.root))
    assert states[0] == states[1]


def test_backward_after_a_forward_that_raised(backends):
    """A log whose input became 0 in a failed forward: backward divides by it, as the rule says
    (ZeroDivisionError), and both backends store the same partial grads."""
    results = []
    for V in backends:
        x, y = V(2.0), V(3.0)
        prog = compile_graph(x.log() * y + y * y)
        x.data = 0.0
        with pytest.raises(ValueError):
            prog.forward()
        results.append((outcome(prog.backward), graph_state(prog.root)))
    assert results[0] == results[1]
    assert results[0][0].startswith("ZeroDivisionError")


def test_backward_after_a_failed_forward_reads_the_same_data(backends):
    """After a forward that raised, backward differentiates at the same values on both
    backends, also for leaves that come after the failing node in topological order."""
    results = []
    for V in backends:
        x, y = V(1.0), V(2.0)
        prog = compile_graph(x.log() * y)  # order: x, log, y, *
        x.data, y.data = -1.0, 5.0
        with pytest.raises(ValueError):
            prog.forward()
        x.data = 1.0
        prog.zero_grad()
        prog.backward()
        results.append(graph_state(prog.root))
    assert results[0] == results[1]


def test_backward_after_a_failed_forward_starts_from_the_nodes_grads(backends):
    """A grad set by hand on a node that the failed forward did not reach is where backward
    starts from, as it is for any node (the forward resets only the grads it recomputes)."""
    results = []
    for V in backends:
        x, y = V(2.0), V(3.0)
        a, b = x.log(), y * y
        prog = compile_graph(a + b)  # order: x, log, y, *, +
        b.grad = 7.0
        x.data = -1.0
        with pytest.raises(ValueError):
            prog.forward()
        assert b.grad == 7.0
        prog.backward()
        results.append(graph_state(prog.root))
    assert results[0] == results[1]
    assert results[1][3][2] == float.hex(8.0)  # the oracle: 7 + 1 from the root


@pytest.mark.parametrize("made_between", [0, 10_000])
def test_a_forward_fails_where_the_first_made_node_fails(backends, made_between):
    """log(x) made before exp(y): a replay with x = 0 and y = 1000 raises log's ValueError, as a
    rebuild does, and leaves exp's node unchanged; also when many nodes were made between
    them (the order of creation then comes from a sort rather than a direct placement)."""
    results = []
    for V in backends:
        x, y = V(2.0), V(3.0)
        a = x.log()
        others = [V(1.0) * 2.0 for _ in range(made_between)]
        b = y.exp()
        prog = compile_graph(b + a)
        x.data, y.data = 0.0, 1000.0
        with pytest.raises(ValueError):
            prog.forward()
        results.append((a.data, b.data, len(others)))
    assert results[0] == results[1] == (math.log(2.0), math.exp(3.0), made_between)


# ---------------------------------------------------------------------------------------------
# The C++ Program against the oracle's, for any sequence of calls

ACTIONS = st.one_of(
    st.tuples(st.just("data"), st.integers(0, 3).map(Ref), numbers),  # most likely a leaf's
    st.tuples(st.just("data"), refs, numbers),  # node.data = x (a leaf's, or an inner node's)
    st.tuples(st.just("grad"), refs, numbers),  # node.grad = x, by hand
    st.tuples(st.sampled_from(["forward", "forward", "backward", "zero_grad"]), st.integers(0, 1)),
    st.tuples(st.just("node_backward"), refs),  # Value.backward() from any node
    st.tuples(st.just("custom_backward"), refs),  # a user-made node's _backward()
    st.tuples(st.just("assign_backward"), refs),  # a compiled node gets a Python _backward
)


def custom(V, a, b):
    """A user-made node over two compiled ones; its _backward writes into their grads."""
    out = V(a.data * 0.5 + b.data, (a, b), "custom")

    def _backward():
        a.grad += 0.5 * out.grad
        b.grad += out.grad

    out._backward = _backward
    return out


def doubled_rule(node):
    """A Python _backward for a built-in node: twice its grad to each operand."""

    def _backward():
        for child in node._children:
            child.grad += 2 * node.grad

    return _backward


def act(nodes, customs, progs, action):
    kind, r = action[0], action[1]
    node = nodes[r % len(nodes)]
    if kind in ("data", "grad"):
        setattr(node, kind, action[2])
    elif kind == "node_backward":
        node.backward()
    elif kind == "custom_backward":
        customs[r % len(customs)]._backward()
    elif kind == "assign_backward":
        node._backward = doubled_rule(node)  # the programs keep their compiled rules
    else:
        getattr(progs[r], kind)()


@given(
    leaf_data,
    st.lists(steps, min_size=1, max_size=20),
    st.booleans(),
    refs,
    refs,
    st.lists(st.tuples(refs, refs), min_size=1, max_size=3),
    st.lists(ACTIONS, min_size=1, max_size=25),
)
def test_cpp_and_pure_programs_agree(backends, leaves, program, whole, i, j, customs, actions):
    """Two programs over overlapping graphs (the program's last node; and a new node over two
    earlier ones), used alternately with Value.backward(), writes by hand, user-made nodes
    writing into their grads and Python _backward assigned after compiling: the same results
    and exceptions, on every node, after every call."""
    sides = []
    for V in backends:
        _, nodes = build(V, leaves, program, whole)
        nodes.append(nodes[i % len(nodes)] * nodes[j % len(nodes)])
        progs = [compile_graph(nodes[-2]), compile_graph(nodes[-1])]
        made = [custom(V, nodes[a % len(nodes)], nodes[b % len(nodes)]) for a, b in customs]
        sides.append((nodes, made, progs))
    for k, action in enumerate(actions):
        done = [outcome(act, *side, action).split(":")[0] for side in sides]
        assert done[0] == done[1], (k, action)
        cpp, pure = (state(nodes + made) for nodes, made, _ in sides)
        assert cpp == pure, (k, action)


def mixed_calls(V):
    """loss.backward(), grads by hand on inner nodes, and two programs sharing nodes, used
    alternately: the state of the nodes after each call."""
    w, x, b = V(0.5), V(-2.0), V(0.25)
    hidden = (w * x + b).tanh()
    loss = (hidden * w - 1) ** 2
    other = (hidden + x).relu() * b
    p1, p2 = compile_graph(loss), compile_graph(other)
    calls = [
        loss.backward,
        p1.backward,  # accumulates on top of loss.backward()'s grads
        lambda: setattr(hidden, "grad", 3.0),
        p2.backward,  # starts from hidden's grad set by hand
        lambda: setattr(x, "data", 1.5),
        p2.forward,  # resets hidden's grad, recomputes it from the new x
        p1.backward,  # on p1's own last data: compile time's
        p1.zero_grad,
        lambda: setattr(hidden, "grad", -1.0),
        p1.forward,
        p1.backward,
        other.backward,
        p2.zero_grad,
        p1.backward,
    ]
    log = []
    for call in calls:
        call()
        log.append(state([w, x, b, hidden, loss, other]))
    return log


def test_mixed_calls_on_overlapping_programs(backends):
    """A worked example of the above."""
    cpp, pure = (mixed_calls(V) for V in backends)
    assert cpp == pure


def test_a_node_made_again_after_compile(backends):
    """Value.__init__ on a compiled node turns it into a leaf; the program goes on computing
    what it compiled, on both backends."""
    results = []
    for V in backends:
        x = V(1.0)
        y = x * 2
        prog = compile_graph(y + 1)
        y.__init__(5.0)
        x.data = 3.0
        prog.forward()
        results.append((y.data, prog.root.data))
    assert results[0] == results[1] == (6.0, 7.0)


def test_a_node_made_again_after_compile_backpropagates_from_its_grad(backends):
    """... and backward starts from the grads the nodes hold, also one set on it since."""
    results = []
    for V in backends:
        x = V(1.0)
        y = x * 2
        z = y * 3
        prog = compile_graph(z)
        prog.backward()  # x.grad 6, y.grad 3
        y.__init__(2.0)  # the same data; a leaf now, its grad reset to 0
        y.grad = 10.0
        prog.backward()
        results.append((x.grad, y.grad, z.grad))
    assert results[0] == results[1] == (32.0, 13.0, 1.0)


def test_backward_is_root_backward(backend):
    """prog.backward() does what root.backward() does, also called again without zeroing
    (inner grads accumulate too, as in micrograd); zero_grad() zeroes every grad."""
    x = backend(3.0)
    y = (x * x + x).tanh() * x
    prog = compile_graph(y)
    x2 = backend(3.0)
    twin = (x2 * x2 + x2).tanh() * x2
    for replayed, built in [
        (prog.backward, twin.backward),
        (prog.backward, twin.backward),
        (y.backward, twin.backward),
        (prog.zero_grad, lambda: [setattr(n, "grad", 0) for n in topological_order(twin)]),
        (prog.backward, twin.backward),
    ]:
        replayed()
        built()
        assert graph_state(y) == graph_state(twin)
    assert x.grad != 0.0
    prog.zero_grad()
    assert {n.grad for n in topological_order(y)} == {0.0}


# ---------------------------------------------------------------------------------------------
# What compile refuses


def custom_op(V, with_backward):
    a = V(2.0)
    out = V(a.data * 3, (a,), "myop")
    if with_backward:

        def _backward():
            a.grad += 3 * out.grad

        out._backward = _backward
    return out


@pytest.mark.parametrize("with_backward", [False, True])
def test_a_user_defined_op_is_refused(backend, with_backward):
    node = custom_op(backend, with_backward)
    with pytest.raises(ValueError, match="myop"):
        compile_graph(node * 2 + 1)
    with pytest.raises(ValueError, match="myop"):
        compile_graph(node)


def test_a_node_with_its_own_backward_is_refused(backend):
    a = backend(2.0)
    b = a * a
    b._backward = lambda: None
    with pytest.raises(ValueError, match=r"'\*'"):
        compile_graph(b + 1)


def test_a_labelled_leaf_is_a_leaf(backend):
    """Value(x, (), 'myop') has no operands: nothing to recompute, so it compiles."""
    leaf = backend(2.0, (), "myop")
    prog = compile_graph(leaf * 2)
    leaf.data = 4.0
    prog.forward()
    assert prog.root.data == 8.0


@pytest.mark.parametrize("thing", [3.0, 1, None, "x", [1.0]])
def test_compile_takes_a_value(thing):
    with pytest.raises(TypeError):
        compile_graph(thing)


def test_compile_takes_a_value_of_its_backend(backends):
    cpp, pure = backends
    from micrograd_cpp import _core

    with pytest.raises(TypeError):
        _core.compile(pure(1.0))
    with pytest.raises(TypeError):
        pure_program.compile(cpp(1.0))


# ---------------------------------------------------------------------------------------------
# Size, root and lifetime


def test_len_and_root(backend):
    x = backend(2.0)
    loss = (x * x).tanh() + x
    prog = compile_graph(loss)
    assert len(prog) == len(topological_order(loss)) == 4
    assert prog.root is loss and prog.root is prog.root
    leaf_prog = compile_graph(x)
    assert len(leaf_prog) == 1 and leaf_prog.root is x
    leaf_prog.forward()
    leaf_prog.backward()
    assert (x.data, x.grad) == (2.0, 1.0)


def test_the_program_keeps_the_graph_alive(backend):
    x = backend(2.0)
    prog = compile_graph((x * x + 1).log())  # nothing else refers to the root
    x.data = 3.0
    prog.forward()
    prog.backward()
    x3 = backend(3.0)
    rebuilt = (x3 * x3 + 1).log()
    rebuilt.backward()
    assert graph_state(prog.root) == graph_state(rebuilt)
    assert prog.root is prog.root and prog.root._op == "log"


def test_dropping_the_program_and_the_root_frees_the_graph(backend):
    """Leaves of a Value subclass report their deletion: every node of the graph is a leaf or
    holds one, so when every leaf is gone, the whole graph is."""
    freed = []

    class Tracked(backend):
        def __del__(self):
            freed.append(self.data)

    xs = [Tracked(float(i)) for i in range(4)]
    loss = ((xs[0] * xs[1] + xs[2]).tanh() * xs[3] + 2).relu()
    prog = compile_graph(loss)
    del xs
    assert freed == []
    del loss
    prog.forward()
    prog.backward()
    assert freed == []  # the program keeps the graph
    del prog
    assert sorted(freed) == [0.0, 1.0, 2.0, 3.0]


def test_deep_chains_compile_replay_and_free(backend):
    """No recursion over the graph: compiling, replaying and dropping a long chain."""
    n = 100_000
    x = backend(0.5)
    y = x
    for _ in range(n):
        y = y * 1.0 + 0.0
    prog = compile_graph(y)
    assert len(prog) == 4 * n + 1
    x.data = 0.25
    prog.forward()
    prog.backward()
    assert (y.data, x.grad) == (0.25, 1.0)
    del y, prog


def test_compile_and_drop_leaks_nothing():
    """Compile, replay and drop a 200,000-node graph 40 times, cycle collector off: the
    resident size stays flat (C++ backend, in a fresh interpreter)."""
    code = """
        import gc, os
        import micrograd_cpp
        from micrograd_cpp import _core

        gc.disable()

        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

        def cycle():
            xs = [_core.Value(i / 7) for i in range(100)]
            y = xs[0]
            for i in range(50_000):
                y = (y * xs[i % 100]).tanh() + 1
            prog = micrograd_cpp.compile(y)
            prog.forward()
            prog.backward()

        for _ in range(5):
            cycle()
        start = rss()
        for _ in range(40):
            cycle()
        print(rss() - start)
    """
    if not os.path.exists("/proc/self/statm"):
        pytest.skip("reads the resident size from /proc")
    cpp_nn()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    growth = int(result.stdout.split()[-1])
    assert growth < 4 * 2**20, f"resident size grew by {growth / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# Sums of products (Note [Chains] in cpp/program.hpp): replayed chain by chain on C++

chain_shapes = st.fixed_dictionaries(
    {
        "samples": st.integers(1, 6),
        "inputs": st.one_of(st.integers(4, 9), st.integers(1, 9)),  # 4 links make a chain
        "outputs": st.integers(1, 5),
        "act": st.sampled_from(["relu", "exp", "none"]),  # exp: a forward can raise
        "start": st.sampled_from(["bias", "input", "weight", "number"]),
        "square": st.booleans(),  # a term x*x
        "tap": st.booleans(),  # a partial sum read elsewhere too, which cuts its chain
        "cross": st.booleans(),  # a term that reads another sample's input
        # terms that read the weights one place along: operand slots that overlap
        "shift": st.sampled_from([0, 0, 1, -1]),
    }
)


def build_chains(V, shape, seed):
    """Samples through a layer of sums of products with shared weights, as nn's layers build
    them, in the variants of `shape`, summed: (the leaves, the root)."""
    from micrograd_cpp import ops

    rng = random.Random(seed)
    n, m = shape["inputs"], shape["outputs"]
    w = [[V(rng.uniform(-1, 1)) for _ in range(n)] for _ in range(m)]
    b = [V(rng.uniform(-1, 1)) for _ in range(m)]
    xs = [[V(rng.uniform(-2, 2)) for _ in range(n)] for _ in range(shape["samples"])]
    ends = [V(rng.uniform(-1, 1)) for _ in range(2)]
    along = [ends[0], *(v for row in w for v in row), ends[1]]  # the weights, one more each end
    outs = []
    for s, x in enumerate(xs):
        for j in range(m):
            start = {"bias": b[j], "input": x[0], "weight": w[j][0], "number": 0.5}[shape["start"]]
            terms = list(x)
            if shape["square"]:
                terms[-1] = x[-1] * x[-1] if n > 1 else terms[-1]
            if shape["cross"] and s:
                terms[0] = xs[s - 1][0]
            if shape["shift"]:
                terms = along[1 + j * n + shape["shift"] :][:n]
            # ops.dot: on C++ the nodes inside have no Python object, as in nn's layers
            if shape["tap"]:
                half = n // 2 + 1
                acc = ops.dot(w[j][:half], terms[:half], start)
                outs.append(acc * 0.5)
                acc = ops.dot(w[j][half:], terms[half:], acc)
            else:
                acc = ops.dot(w[j], terms, start)
            outs.append({"relu": acc.relu, "exp": acc.exp, "none": lambda a=acc: a}[shape["act"]]())
    leaves = [v for row in w for v in row] + b + [v for row in xs for v in row] + ends
    return leaves, sum(outs[1:], outs[0]) if len(outs) > 1 else outs[0] * 1.0


@given(chain_shapes, st.integers(0, 2**16), st.lists(st.lists(numbers, min_size=1), max_size=3))
def test_sums_of_products_replay_equals_rebuild(backends, shape, seed, rounds):
    """Layers of dot products replay as rebuilding them computes, and the C++ program as the
    oracle's through forwards, backwards twice in a row and zero_grads, bit for bit."""
    graphs = [build_chains(V, shape, seed) for V in backends]
    progs = [compile_graph(root) for _, root in graphs]
    for V, prog in zip(backends, progs, strict=True):
        check_replay_equals_rebuild(V, prog)
    for data in [[], *rounds]:
        states = []
        for (leaves, root), prog in zip(graphs, progs, strict=True):
            for k, x in enumerate(data):
                leaves[k % len(leaves)].data = x
            outcomes = [outcome(prog.forward), outcome(prog.backward), outcome(prog.backward)]
            states.append((outcomes, graph_state(root)))
            prog.zero_grad()
            states.append(graph_state(root))
        assert states[: len(states) // 2] == states[len(states) // 2 :]


def test_an_mlps_layers_replay_as_chains(backends):
    """A batch through MLP(9, [8, 3]): its neurons' sums replay chain by chain on C++ (far fewer
    runs than nodes) and equal the oracle's replay through steps of training."""
    states, runs = [], []
    for V in backends:
        random.seed(3)
        model = nn_of(V).MLP(9, [8, 3])
        rng = random.Random(4)
        xs = [[V(rng.uniform(-1, 1)) for _ in range(9)] for _ in range(6)]
        loss = sum((o * o for x in xs for o in model(x)), V(0.0))
        prog = compile_graph(loss)
        runs.append(getattr(prog, "_runs", None))
        check_replay_equals_rebuild(V, prog)
        for step in range(3):
            model.zero_grad()
            prog.backward()
            for p in model.parameters():
                p.data -= 0.1 * p.grad
            xs[step][step].data = -0.0
            prog.forward()
        states.append(graph_state(loss))
    assert states[0] == states[1]
    assert runs[1] is None and 0 < runs[0] < len(prog) // 20


PASSES = st.tuples(st.sampled_from(["forward", "backward", "zero_grad"]), st.integers(0, 1))
LAYER = {"samples": 3, "inputs": 8, "outputs": 3, "act": "none", "start": "bias"}
LAYER.update(square=False, tap=False, cross=False, shift=0)


@given(
    chain_shapes,
    st.integers(0, 2**16),
    st.lists(st.one_of(PASSES, PASSES, HIDDEN_ACTIONS), min_size=1, max_size=25),
)
@example(LAYER, 1, [("forward", 0), ("backward", 0)])  # the inner grads from the tops'
@example(LAYER, 1, [("forward", 0), ("backward", 0), ("backward", 0)])
@example(LAYER, 1, [("forward", 0), ("walk", [0, 0, 0, 0, 0, 0]), ("backward", 0)])
# links whose grads must come in micrograd's order: operands that overlap, or a start among them
@example({**LAYER, "act": "exp", "shift": -1}, 1, [("forward", 0), ("backward", 0)])
@example({**LAYER, "act": "exp", "start": "input"}, 1, [("forward", 0), ("backward", 0)])
@example({**LAYER, "act": "exp", "start": "weight"}, 1, [("forward", 0), ("backward", 0)])
def test_chains_keep_their_inner_nodes_as_the_oracle_shows_them(backends, shape, seed, actions):
    """Sums of products whose inner nodes have no Python object, which C++ passes keep inside
    their chains (Note [Chains kept inside]), and a second program over the same nodes: replayed
    in any order, raising or not, with nodes reached later (walking _children) and
    Value.backward() from them; what the user can see after each call and, at the end, every
    node equal the oracle's."""
    sides = []
    for V in backends:
        leaves, root = build_chains(V, shape, seed)
        roots = [root, root * leaves[-1]]
        sides.append((leaves, roots, [compile_graph(r) for r in roots], []))
    act_on_both(sides, actions)
