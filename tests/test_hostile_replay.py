"""A compiled Program against Python code that replays inside a backward pass, values no replay
computes, and graphs whose nodes fail in an order other than the topological one: the same
numbers and the same exceptions as the pure oracle and as rebuilding the graph."""

import math

import micrograd_cpp
import pytest
from micrograd_cpp.pure import program as pure_program

compile_graph = micrograd_cpp.compile


def grads(nodes):
    return [n.grad for n in nodes]


# ---------------------------------------------------------------------------------------------
# A replay inside a Python _backward: the built-in rules that follow it write grads the program
# holds too, so its next pass must read them back.


def run_new_program(progs, inner):
    progs.append(compile_graph(inner))
    progs[-1].backward()


# What the _backward does; the last program in the list is replayed after the backward pass.
IN_BACKWARD = {
    "zero_grad": lambda progs, inner: progs[-1].zero_grad(),
    "backward": lambda progs, inner: progs[-1].backward(),
    "a new program": run_new_program,
}


def replay_in_backward(V, replay):
    w, x = V(2.0), V(-1.5)
    inner = micrograd_cpp.dot([w, x, w], [x, w, w])  # inner nodes: w*x, 0 + w*x, x*w, ...
    progs = [compile_graph(inner)]
    c = V(inner.data, (inner,), "custom")

    def backward():
        replay(progs, inner)
        inner.grad += c.grad

    c._backward = backward
    (c * 3).backward()
    progs[-1].backward()
    return w.grad, x.grad


@pytest.mark.parametrize("replay", list(IN_BACKWARD))
def test_a_replay_inside_a_python_backward(backends, replay):
    cpp, pure = (replay_in_backward(V, IN_BACKWARD[replay]) for V in backends)
    assert cpp == pure
    if replay == "zero_grad":
        # By hand: (c*3).backward() leaves 3 in every inner grad, w.grad 3 and x.grad 12;
        # prog.backward() then adds 1 at the root, 4 and 7 below, 10 at w*x.
        assert cpp == (-6.5, 46.0)


# ---------------------------------------------------------------------------------------------
# tanh's rule squares the value the node holds: a value set by hand overflows it.


def huge_tanhs(V):
    xs = [V(float(i + 1)) for i in range(3)]
    ts = [x.tanh() for x in xs]
    for t in ts:
        t.data = 1e200
    return xs, ts, ts[0] + ts[1] + ts[2]


def test_a_failing_backward_over_tanh_nodes(backends):
    """The replay stops at the first rule micrograd applies that fails, as a rebuilt graph's
    root.backward() does: only the last tanh has its grad."""
    results = []
    for V in backends:
        xs, ts, root = huge_tanhs(V)
        prog = compile_graph(root)
        with pytest.raises(OverflowError) as replayed:
            prog.backward()
        results.append((str(replayed.value), grads(ts), grads(xs)))
        xs, ts, root = huge_tanhs(V)
        with pytest.raises(OverflowError) as rebuilt:
            root.backward()
        assert results[-1] == (str(rebuilt.value), grads(ts), grads(xs))
    assert results[0] == results[1]
    assert results[0][1:] == ([0.0, 0.0, 1.0], [0.0, 0.0, 0.0])


def test_tanh_nodes_a_forward_recomputed_replay_like_a_rebuild(backends):
    """After a forward the tanh values are at most 1 in size: the same grads as a rebuild."""
    results = []
    for V in backends:
        xs, _, root = huge_tanhs(V)
        prog = compile_graph(root)
        prog.forward()
        prog.backward()
        rebuilt = [V(x.data) for x in xs]
        sum((x.tanh() for x in rebuilt[1:]), rebuilt[0].tanh()).backward()
        assert grads(xs) == grads(rebuilt)
        results.append(grads(xs))
    assert results[0] == results[1]
    assert results[0][0] == 1 - math.tanh(1.0) ** 2


# ---------------------------------------------------------------------------------------------
# A forward fails where a rebuild fails: at the first failing node in the order the code made
# the nodes, not in topological order.


def log_then_exp(x, y):
    """The graph of the README's example; its topological order is y, exp, x, log, +."""
    a = x.log()
    b = y.exp()
    return a, b, b + a


@pytest.mark.parametrize(
    ("x", "y", "error"),
    [(0.0, 1000.0, ValueError), (-1.0, 2.0, ValueError), (2.0, 1000.0, OverflowError)],
)
def test_a_forward_fails_where_a_rebuild_fails(backends, x, y, error):
    states = []
    for V in backends:
        xv, yv = V(1.0), V(1.0)
        a, b, root = log_then_exp(xv, yv)
        prog = compile_graph(root)
        xv.data, yv.data = x, y
        with pytest.raises(error) as replayed:
            prog.forward()
        with pytest.raises(error) as rebuilt:
            log_then_exp(V(x), V(y))
        assert str(replayed.value) == str(rebuilt.value)
        # a node made before the failing one holds its new value, one made after keeps its old
        states.append((str(replayed.value), a.data, b.data, root.data))
    assert states[0] == states[1]
    if error is OverflowError:  # the log succeeded, the exp failed
        assert states[0][1:] == (math.log(2.0), math.e, math.e)
    else:
        assert states[0][1:] == (0.0, math.e, math.e)


def test_the_pure_program_follows_the_same_order():
    """The oracle's own Program too (micrograd_cpp.compile picks it for pure Values)."""
    from micrograd_cpp.pure.engine import Value

    x, y = Value(1.0), Value(1.0)
    prog = pure_program.compile(log_then_exp(x, y)[2])
    x.data, y.data = 0.0, 1000.0
    with pytest.raises(ValueError, match="math domain error"):
        prog.forward()
