"""W2: one training step of micrograd's demo.ipynb: MLP(2, [16, 16, 1]) on 100 moons, SVM loss.
It also runs torch the way torch users write it ('batched'), micrograd-cpp's own loss and
optimizer ('optim'), the compiled replay, and the C++ tape anchor (bench/tape_anchor.cpp)."""

import math
import random
from functools import lru_cache
from time import perf_counter_ns as time_ns

import numpy as np
from harness import EXACT, assert_close, import_torch, load, torch_value
from tape import check_tape_anchor, run_tape_anchor, tape_of

# rough cost of one W2 step in s, by backend (and for torch batched)
STEP_S = {"cpp": 0.005, "pure": 0.25, "micrograd": 1.0, "micrograd-nogc": 0.15, "torch": 0.6}
STEP_S["batched"] = 0.001

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


def w2_torch_batched():
    """The step as torch users write it: the data as a 100x2 tensor, nn.Linear layers (holding
    the notebook's initial weights), torch.optim.SGD; returns step() like w2_notebook's."""
    from micrograd_cpp.datasets import make_moons
    from micrograd_cpp.pure import nn as pure_nn

    torch = import_torch()
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
