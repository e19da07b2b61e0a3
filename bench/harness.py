"""What the workloads share: the backends they run on and the checks of their results, used by
each workload's module (w1_expr.py ... w6_dropped.py), the pytest benchmarks (bench_*.py) and
compare.py.

Every workload runs on each backend of BACKENDS: micrograd-cpp's C++ engine ('cpp') and its
pure-Python oracle ('pure'), and, when installed, upstream micrograd 0.1.0 as users run it
('micrograd') and with the garbage collector off ('micrograd-nogc'), and torch on one-element
float64 tensors ('torch', one thread). Each workload checks what it computes: cpp must equal the
pure oracle exactly; micrograd and torch must agree with it to 1e-9 relative (they sum
gradients in another order).
"""

import contextlib
import gc
import json
import math
import os
import subprocess
import sys
import threading

# Every backend runs on one thread, numpy's BLAS too: once scikit-learn's digits are loaded, its
# idle threads would otherwise share this process's cores with the backends being timed. Set
# before numpy is first imported (the workloads import it after this module).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

BACKENDS = ("cpp", "pure", "micrograd", "micrograd-nogc", "torch")
UPSTREAM = ("micrograd", "micrograd-nogc")
EXACT = ("cpp", "pure")  # backends that must equal the oracle bit for bit
REL_TOL = 1e-9  # for the others

# rough cost of one op or node (forward or backward) in ns, to size a benchmark's rounds
COST_NS = {"cpp": 150, "pure": 3000, "micrograd": 15000, "micrograd-nogc": 2000, "torch": 8000}


def rounds(seconds, budget=2.0, most=20):
    """How many rounds of `seconds` each to run in a budget: at least 2, at most `most`."""
    return max(2, min(most, int(budget / seconds)))


def import_torch():
    """torch, set to run on one thread (ImportError when it is not installed)."""
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
    raises the recursion limit. Python 3.11+ runs Python-to-Python calls off the C stack; before
    that, each level also takes C stack, and a graph 100,000 levels deep overflows the main
    thread's (a segmentation fault): there the sort runs in a thread with a stack of 1 GiB."""

    RECURSION_LIMIT = 1_000_000
    DEEP_STACK = 1 << 30

    def backward(self, root):
        limit = sys.getrecursionlimit()
        sys.setrecursionlimit(max(limit, self.RECURSION_LIMIT))
        try:
            if sys.version_info >= (3, 11):
                root.backward()
            else:
                on_a_deep_stack(root.backward, self.DEEP_STACK)
        finally:
            sys.setrecursionlimit(limit)


def on_a_deep_stack(fn, stack_bytes):
    """fn() in a thread of its own whose stack has stack_bytes, waited for; its exception, if
    any, is raised here."""
    failure = []

    def run():
        try:
            fn()
        except BaseException as e:  # raised again in the caller's thread
            failure.append(e)

    previous = threading.stack_size(stack_bytes)
    try:
        thread = threading.Thread(target=run)
        thread.start()
    finally:
        threading.stack_size(previous)
    thread.join()
    if failure:
        raise failure[0]


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


def torch_scalar_mlp():
    """micrograd's MLP with one-element float64 tensors for Values (the same random init)."""
    from micrograd_cpp.pure import nn

    torch = import_torch()

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
    return import_torch().tensor([float(x)], dtype=import_torch().float64)


def rss():
    """This process's resident set size in bytes (Linux)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def in_fresh_interpreter(script, args, timeout):
    """What `python script *args` prints as JSON (a memory measurement, in a process of its
    own); ImportError when the backend it was asked for is not installed (exit status 3)."""
    cmd = [sys.executable, str(script), *map(str, args)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode == 3:
        raise ImportError(out.stderr.strip())
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({out.returncode}):\n{out.stderr}")
    return json.loads(out.stdout)


def fresh_main(usage, measure):
    """The script side of in_fresh_interpreter: prints measure(*args) as JSON, args being
    sys.argv's arguments as usage names them ("script BACKEND ..."); exits with status 3 when
    the backend is not installed."""
    args = sys.argv[1:]
    if len(args) != len(usage.split()) - 1:
        sys.exit(f"usage: python {usage}")
    try:
        load(args[0])
    except ImportError as error:
        print(error, file=sys.stderr)
        sys.exit(3)
    print(json.dumps(measure(*args)))


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
        torch = import_torch()

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
