"""Threads: Python threads that build and backpropagate independent graphs at the same time get
exactly the results of a single-threaded run on the oracle.

The engine keeps process-wide state (a node free list, traversal scratch space, a visit counter)
that the GIL protects; these tests make threads switch every few microseconds, including in the
middle of backward() (a user's `_backward` that sleeps releases the GIL) and of a graph's
teardown (a Value's `__del__` that sleeps), so that any state one thread leaves half-updated is
seen by another. Callbacks that fight back do the same in the middle of an operation: a number's
`__float__` or a child's `__hash__` that sleeps and re-initialises a node of its own graph, and
finalizers of cyclic garbage that the collector runs inside other threads' engine calls.
"""

import builtins
import gc
import math
import numbers
import random
import sys
import threading
import time
import weakref

import pytest
from micrograd_cpp import _core
from micrograd_cpp.pure.engine import Value as PureValue

THREADS = 4


def bits(x):
    return "nan" if math.isnan(x) else float.hex(x)


def fused(V):
    """(sum, dot) building the same nodes on backend V: _core's one-call versions on C++."""
    if V is _core.Value:
        return _core.sum, _core.dot
    return builtins.sum, lambda a, b, start=0: builtins.sum(
        (x * y for x, y in zip(a, b, strict=False)), start
    )


def custom(V, a, b, sleep):
    """A user-made node in micrograd's style, whose _backward may release the GIL."""
    out = V(a.data * 0.5 + b.data, (a, b), "custom")

    def _backward():
        if sleep:
            time.sleep(0)
        a.grad += 0.5 * out.grad
        b.grad += out.grad

    out._backward = _backward
    return out


class Reinitialising:
    """A number (a registered numbers.Real) whose __float__ releases the GIL and then
    re-initialises a node of its own thread's graph: the engine converts it in the middle of an
    operation, while other threads run."""

    def __init__(self, x, victim, data, children):
        self.x, self.victim, self.data, self.children = x, victim, data, children

    def __float__(self):
        time.sleep(0)
        self.victim.__init__(self.data, self.children)
        return self.x


numbers.Real.register(Reinitialising)


def hashing_class(V):
    """A subclass of V whose __hash__ releases the GIL and re-initialises the node whose _prev
    (a set) is being built from it."""

    class Hashing(V):
        def __hash__(self):
            time.sleep(0)
            parent = self.parent
            if parent is not None:
                self.parent = None  # once: the parent's new children hash normally
                V.__init__(parent, parent.data * 0.5, parent._children[:1])
            return 1

    return Hashing


HASHING = {V: hashing_class(V) for V in (_core.Value, PureValue)}


def hostile(V, rng, nodes, a):
    """A step of callbacks that fight back, on this thread's own nodes: a + a number whose
    __float__ re-initialises an earlier node, or a node whose children's __hash__ re-initialise
    it while its _prev is read."""
    if rng.random() < 0.5:
        victim = rng.choice(nodes)
        kids = [rng.choice(nodes[:4])] if rng.random() < 0.5 else []
        return a + Reinitialising(rng.uniform(-1, 1), victim, rng.uniform(-2, 2), kids)
    kids = [HASHING[V](rng.uniform(-2, 2)) for _ in range(3)]
    out = V(a.data, [a, *kids], "hashed")
    for kid in kids:
        kid.parent = out
    return V(math.fsum(k.data for k in out._prev), [out], "prev")  # a set: in any order


def program(V, seed, sleep=False, n_steps=300, hostile_steps=False):
    """A seeded random graph on backend V, backpropagated: every node's (op, data, grad), and the
    outcome of each step (an exception's type name for a step that raised)."""
    rng = random.Random(seed)
    vsum, vdot = fused(V)
    nodes = [V(rng.uniform(-2, 2)) for _ in range(4)]
    outcomes = []
    for _ in range(n_steps):
        a, b = nodes[-rng.randint(1, 4)], rng.choice(nodes)
        c = rng.uniform(-3, 3)
        k = rng.randrange(16 if hostile_steps else 14)
        try:
            if k == 0:
                out = a + b
            elif k == 1:
                out = a * b
            elif k == 2:
                out = a - c
            elif k == 3:
                out = c / a
            elif k == 4:
                out = a ** rng.choice([2, -1, 0.5, 3])
            elif k == 5:
                out = a.relu()
            elif k == 6:
                out = (a * 0.1).tanh()
            elif k == 7:
                out = (a * 0.1).exp()
            elif k == 8:
                out = a.log()
            elif k == 9:
                out = -a
            elif k == 10:
                out = custom(V, a, b, sleep)
            elif k == 11:
                out = vsum(rng.sample(nodes, min(len(nodes), 5)), c)
            elif k == 12:
                out = vdot(nodes[-6:], nodes[:6])
            elif k == 13:
                out = (a + b).relu() * 0.5 + 0.25
            else:
                out = hostile(V, rng, nodes, a)
        except (ArithmeticError, ValueError) as e:
            outcomes.append(type(e).__name__)
            continue
        outcomes.append("ok")
        nodes.append(out)
        if abs(out.data) > 1e6 or math.isnan(out.data):
            nodes.append(V(rng.uniform(-2, 2)))  # keep later data moderate
    root = nodes[-1]
    try:
        root.backward()
        outcomes.append("ok")
    except (ArithmeticError, ValueError) as e:
        outcomes.append(type(e).__name__)
    return outcomes, [(n._op, bits(n.data), bits(n.grad)) for n in nodes]


def run_in_threads(jobs):
    """Run each job (a callable) in its own thread, all started together and switching every few
    microseconds; return their results in order, re-raising the first exception."""
    barrier = threading.Barrier(len(jobs))
    results = [None] * len(jobs)
    errors = []

    def worker(i, job):
        try:
            barrier.wait()
            results[i] = job()
        except BaseException as e:  # reported in the main thread
            errors.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    if errors:
        raise errors[0]
    return results


def many(V, seeds, sleep=False, hostile_steps=False):
    return lambda: [program(V, seed, sleep, hostile_steps=hostile_steps) for seed in seeds]


def expected(seeds, hostile_steps=False):
    return [program(PureValue, seed, hostile_steps=hostile_steps) for seed in seeds]


def test_the_programs_exercise_the_engine():
    outcomes, nodes = program(_core.Value, 0)
    assert len(nodes) > 250 and outcomes[-1] == "ok"
    assert {op for op, _, _ in nodes} >= {"+", "*", "**2", "ReLU", "tanh", "exp", "log", "custom"}


def test_threads_building_and_backpropagating_independent_graphs():
    seeds = [[1000 * t + i for i in range(12)] for t in range(THREADS)]
    results = run_in_threads([many(_core.Value, s) for s in seeds])
    for s, result in zip(seeds, results, strict=True):
        assert result == expected(s)


def test_a_backward_that_releases_the_gil_while_others_run():
    """One thread's custom _backward sleeps (releasing the GIL) in the middle of backward(); the
    others build, backpropagate and free graphs meanwhile."""
    seeds = [[7000 + 1000 * t + i for i in range(12)] for t in range(THREADS)]
    jobs = [many(_core.Value, seeds[0], sleep=True)]
    jobs += [many(_core.Value, s) for s in seeds[1:]]
    results = run_in_threads(jobs)
    for s, result in zip(seeds, results, strict=True):
        assert result == expected(s)


def test_every_thread_releasing_the_gil_in_backward():
    seeds = [[9000 + 1000 * t + i for i in range(8)] for t in range(THREADS)]
    results = run_in_threads([many(_core.Value, s, sleep=True) for s in seeds])
    for s, result in zip(seeds, results, strict=True):
        assert result == expected(s)


def test_nested_backward_from_a_sleeping_backward_in_threads():
    """A _backward that sleeps and then runs backward() on another graph: nested traversals in
    several threads at once."""

    def job(seed):
        def run(V):
            rng = random.Random(seed)
            x = V(rng.uniform(0.5, 2))
            inner = [V(rng.uniform(0.5, 2)) for _ in range(3)]
            out = V(x.data * 2, (x,), "twice")

            def _backward():
                time.sleep(0)
                x.grad += 2 * out.grad
                y = (inner[0] * inner[1] + inner[2].tanh()) ** 2
                y.backward()

            out._backward = _backward
            root = (out * x + x.exp()).relu()
            for _ in range(20):
                root.backward()
            return [bits(v.grad) for v in [x, *inner]]

        return run

    seeds = list(range(THREADS))
    want = [job(seed)(PureValue) for seed in seeds]
    got = run_in_threads([lambda seed=seed: job(seed)(_core.Value) for seed in seeds])
    assert got == want


@pytest.mark.parametrize("sleep_in_del", [False, True])
def test_graphs_freed_in_several_threads_are_all_freed(sleep_in_del):
    """Teardown runs in every thread; a __del__ that sleeps releases the GIL in the middle of it.
    Every leaf is freed in the end, and nothing is freed twice."""

    class Leaf(_core.Value):
        def __del__(self):
            if sleep_in_del:
                time.sleep(0)

    refs = []
    lock = threading.Lock()

    def job(seed):
        def run():
            rng = random.Random(seed)
            for _ in range(30):
                leaves = [Leaf(rng.uniform(-1, 1)) for _ in range(20)]
                with lock:
                    refs.extend(weakref.ref(v) for v in leaves)
                y = _core.sum(leaves)
                for _ in range(200):
                    y = (y * rng.choice(leaves)).tanh() + rng.choice(leaves)
                y.backward()
                total = sum(v.grad for v in leaves)
                del leaves, y
            return total

        return run

    run_in_threads([job(seed) for seed in range(THREADS)])
    assert len(refs) == THREADS * 30 * 20
    assert [r for r in refs if r() is not None] == []


def test_the_hostile_programs_exercise_their_callbacks():
    outcomes, nodes = program(_core.Value, 0, hostile_steps=True)
    assert len(nodes) > 250 and outcomes[-1] == "ok"
    assert "prev" in {op for op, _, _ in nodes}


def test_callbacks_that_release_the_gil_and_change_their_graph():
    """Each thread's numbers re-initialise its nodes from __float__, and its nodes' __hash__
    re-initialises their parent while _prev is read, sleeping first: the engine is in the middle
    of an operation when another thread runs."""
    seeds = [[11000 + 1000 * t + i for i in range(6)] for t in range(THREADS)]
    results = run_in_threads([many(_core.Value, s, hostile_steps=True) for s in seeds])
    for s, result in zip(seeds, results, strict=True):
        assert result == expected(s, hostile_steps=True)


class Finalized:
    """Cyclic garbage whose finalizer builds, backpropagates and re-initialises a graph of its
    own and releases the GIL: under gc.set_threshold(1) it runs inside whatever engine call of
    whichever thread allocates next."""

    def __init__(self, V, x, grads):
        self.me, self.V, self.x, self.grads = self, V, x, grads

    def __del__(self):
        a = self.V(self.x)
        y = (a * a + 1.0).tanh() * a
        time.sleep(0)
        y.backward()
        a.__init__(0.0, [])
        self.grads.append((self.x, a.grad, y.data))


def test_finalizers_of_cyclic_garbage_in_the_middle_of_other_threads():
    """Finalizers of cyclic garbage run in every thread's engine calls (the collector runs on
    almost every allocation): the threads' graphs, and the finalizers' own, are those of an
    undisturbed single-threaded run on the oracle."""
    seeds = [[13000 + 1000 * t + i for i in range(4)] for t in range(THREADS - 1)]
    grads = []

    def garbage():
        for i in range(2000):
            Finalized(_core.Value, i / 1000 - 1.0, grads)
            if i % 50 == 0:
                time.sleep(0)

    threshold = gc.get_threshold()
    gc.set_threshold(1)
    try:
        results = run_in_threads(
            [many(_core.Value, s, hostile_steps=True) for s in seeds] + [garbage]
        )
        gc.collect()
    finally:
        gc.set_threshold(*threshold)
    for s, result in zip(seeds, results[:-1], strict=True):
        assert result == expected(s, hostile_steps=True)
    assert len(grads) == 2000
    for x, grad, data in grads:
        a = PureValue(x)
        y = (a * a + 1.0).tanh() * a
        y.backward()
        assert (grad, data) == (0.0, y.data)  # re-initialised: grad 0.0, as a fresh leaf
