"""W5: one training step of a digits classifier, as micrograd users write it once the moons demo
works: scikit-learn's 8x8 digits (1,437 training images scaled to [0, 1], shipped inside its
package), MLP(64, [32, 10]), softmax cross-entropy as EurekaLabsAI/micrograd writes it (exp, a
sum, a division, log), the mean over a batch of 32, zero_grad, backward, SGD at lr 0.1: about
160,000 nodes a step.

Variants, all from the same initial weights and the same batches:
- 'verbatim' on each scalar engine: the code above as written, on micrograd-cpp ('cpp'), its
  oracle ('pure') and micrograd 0.1.0 ('micrograd', 'micrograd-nogc', with exp and log added the
  lecture's way);
- 'compiled' ('cpp', 'pure'): micrograd_cpp.digits' graph of one batch (losses.cross_entropy_graph
  over one-hot target leaves) compiled once and replayed with each batch, with optim.SGD;
- 'batched' ('torch'): the same model as a torch.nn.Sequential of float64 Linear layers on one
  thread, F.cross_entropy over the batch tensor, torch.optim.SGD.

The verbatim steps' losses must equal the oracle's bit for bit on 'cpp' and to 1e-9 relative on
micrograd; the compiled and batched steps compute the same loss another way and must agree to
1e-9 relative. Needs scikit-learn (ImportError without it).
"""

import math
import random
import statistics
import time
from functools import lru_cache

import harness
import numpy as np

W5_BATCH = 32
W5_SEED = 1337
W5_LR = 0.1
W5_CHECKED_STEPS = 3  # steps compared with the oracle's run
W5_STEP_S = {"cpp": 0.015, "pure": 1.0, "micrograd": 4.0, "micrograd-nogc": 0.6}
W5_STEP_S.update(compiled=0.003, batched=0.001)


def data():
    """(X, y): the training images and labels; ImportError without scikit-learn."""
    from micrograd_cpp.datasets import load_digits

    X, y, _, _ = load_digits()
    return X, y


def batches(X, y, size):
    """The batches every variant trains on, in order: a fixed shuffle, cut in full batches."""
    order = np.random.RandomState(W5_SEED).permutation(len(y))
    k = 0
    while True:
        chosen = order[k * size : (k + 1) * size]
        if len(chosen) < size:
            k, chosen = 0, order[:size]
        k += 1
        yield X[chosen], y[chosen]


def initial_weights():
    """The parameters' values of micrograd-cpp's MLP(64, [32, 10]) made after random.seed."""
    from micrograd_cpp.pure import nn

    state = random.getstate()
    random.seed(W5_SEED)
    weights = [p.data for p in nn.MLP(64, [32, 10]).parameters()]
    random.setstate(state)
    return weights


def model_for(be):
    """be's MLP(64, [32, 10]) holding the initial weights."""
    model = be.MLP(64, [32, 10])
    for p, w in zip(model.parameters(), initial_weights(), strict=True):
        p.data = w
    return model


def eurekalabs_cross_entropy(logits, target):
    """EurekaLabsAI/micrograd's cross_entropy, as its users write it."""
    ex = [x.exp() for x in logits]
    denom = sum(ex)
    probs = [x / denom for x in ex]
    return -probs[target].log()


class Steps:
    """W5's training steps of one variant on one backend; step() runs the next step and returns
    its loss (before the update) as a float."""

    def __init__(self, variant, backend, batch=W5_BATCH):
        self.variant, self.name, self.batch = variant, backend, batch
        X, y = data()
        self.batches = batches(X, y, batch)
        if variant == "batched":
            self.step = self.torch_batched()
        elif variant == "compiled":
            self.step = self.compiled()
        else:
            self.step = self.verbatim()

    def verbatim(self):
        from micrograd_cpp.digits import lecture_exp_log

        be = harness.load(self.name)
        Value, model = be.Value, model_for(be)

        def step():
            Xb, yb = next(self.batches)
            with lecture_exp_log(Value):  # micrograd has no exp or log: the lecture's
                inputs = [list(map(Value, row)) for row in Xb.tolist()]
                scores = list(map(model, inputs))
                losses = [
                    eurekalabs_cross_entropy(s, t) for s, t in zip(scores, yb.tolist(), strict=True)
                ]
                loss = sum(losses) * (1.0 / len(losses))
                model.zero_grad()
                be.backward(loss)
                for p in model.parameters():
                    p.data -= W5_LR * p.grad
            return float(loss.data)

        return step

    def compiled(self):
        from micrograd_cpp import digits, optim

        model = model_for(harness.load(self.name))
        graph = digits.CompiledBatch(model, self.batch)
        opt = optim.SGD(model.parameters(), lr=W5_LR)

        def step():
            graph.load(*next(self.batches))
            opt.zero_grad()
            graph.program.backward()
            opt.step()
            return graph.loss.data

        return step

    def torch_batched(self):
        import torch
        from micrograd_cpp import interop

        torch.set_num_threads(1)
        model = interop.to_torch(model_for(harness.load("pure")))
        opt = torch.optim.SGD(model.parameters(), lr=W5_LR)

        def step():
            Xb, yb = next(self.batches)
            logits = model(torch.from_numpy(Xb))
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return loss.item()

        return step

    def verify(self, history):
        """Assert the losses of the steps run so far against the oracle's verbatim run."""
        reference = reference_losses(min(len(history), W5_CHECKED_STEPS), self.batch)
        for k, loss in enumerate(history):
            assert math.isfinite(loss), (k, loss)
            if k < len(reference):
                name = self.name if self.variant == "verbatim" else self.variant
                harness.assert_close(name, loss, reference[k], f"loss of step {k}")

    def seconds(self):
        return W5_STEP_S[self.name if self.variant == "verbatim" else self.variant]


def compile_cost(backend, batch=W5_BATCH, repeats=5):
    """(ms a rebuild of the compiled variant's batch graph takes, ms compiling it takes), medians
    on backend ('cpp', 'pure'). A rebuild is what a loop that rebuilds the graph pays for it
    each step: making it (micrograd_cpp.digits.CompiledBatch, not compiled) and dropping it.
    compile() is timed alone, on a graph made the same way."""
    from micrograd_cpp import digits

    model = model_for(harness.load(backend))
    rebuilds, compiles = [], []
    compile_graph = digits.compile_graph

    def timed_compile(root):
        t0 = time.perf_counter()
        program = compile_graph(root)
        compiles.append(time.perf_counter() - t0)
        return program

    try:
        for _ in range(repeats):
            digits.compile_graph = lambda root: None
            t0 = time.perf_counter()
            graph = digits.CompiledBatch(model, batch)
            del graph
            rebuilds.append(time.perf_counter() - t0)
            digits.compile_graph = timed_compile
            graph = digits.CompiledBatch(model, batch)
            del graph
    finally:
        digits.compile_graph = compile_graph
    return statistics.median(rebuilds) * 1e3, statistics.median(compiles) * 1e3


@lru_cache(maxsize=4)
def reference_losses(n, batch):
    """The losses of the oracle's first n verbatim steps."""
    steps = Steps("verbatim", "pure", batch)
    return [steps.step() for _ in range(n)]


def nodes(batch=W5_BATCH):
    """The number of nodes in one verbatim step's graph, on the oracle."""
    from micrograd_cpp.pure import engine

    X, y = next(batches(*data(), batch))
    model = model_for(harness.load("pure"))
    scores = [model(list(map(engine.Value, row))) for row in X.tolist()]
    loss = sum(eurekalabs_cross_entropy(s, t) for s, t in zip(scores, y.tolist(), strict=True)) * (
        1.0 / batch
    )
    return len(engine.topological_order(loss))
