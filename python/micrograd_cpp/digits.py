"""python -m micrograd_cpp digits: an MLP learns scikit-learn's 8x8 digits, compiled and replayed.

MLP(64, [32, 10]) on datasets.load_digits' 1,437 training images, losses.cross_entropy_graph
over one-hot target leaves, SGD at lr 0.1 on batches of 32. The graph of one batch is built and
compiled once; each step writes the next batch into its input and target leaves and replays it.
The test images go through the same program, forward only. When micrograd 0.1.0 is installed, a
few of its steps on the same model and data are timed, to tell how long it would take.
"""

import argparse
import contextlib
import math
import random
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from . import losses, ops, optim
from .datasets import load_digits
from .demo import cpp_available, seed
from .engine import Value
from .nn import MLP
from .program import compile as compile_graph

PIXELS, CLASSES, HIDDEN = 64, 10, 32
BATCH, LR = 32, 0.1
EPOCHS = 30
# micrograd's timed steps: (steps, images in each), scaled to a batch of BATCH images
MICROGRAD_STEPS, MICROGRAD_QUICK_STEPS = (2, BATCH), (1, 4)

Images = NDArray[np.float64]
Labels = NDArray[np.intp]


class CompiledBatch:
    """The loss graph of one batch, compiled: mean cross-entropy of the model's logits.

    Its leaves are the model's parameters, the images' pixels and the one-hot targets; load()
    writes a batch into the latter two and replays the forward. The model may be the oracle's
    (micrograd_cpp.pure.nn.MLP): the graph is then the oracle's too.
    """

    def __init__(self, model: MLP, size: int = BATCH) -> None:
        self.size = size
        leaf = type(model.parameters()[0])  # the model's engine's Value
        self.inputs = [[leaf(0.0) for _ in range(PIXELS)] for _ in range(size)]
        self.targets = [[leaf(0.0) for _ in range(CLASSES)] for _ in range(size)]
        self.logits: list[list[Value]] = []
        for x in self.inputs:
            out = model(x)
            assert isinstance(out, list)  # CLASSES outputs
            self.logits.append(out)
        sample_losses = [
            losses.cross_entropy_graph(logits, targets)
            for logits, targets in zip(self.logits, self.targets)
        ]
        self.loss = ops.sum(sample_losses) * (1.0 / size)
        self.program = compile_graph(self.loss)
        self._pixels = [v for row in self.inputs for v in row]
        self._onehots = [v for row in self.targets for v in row]
        self._eye = np.eye(CLASSES)

    def load(self, X: Images, y: Labels) -> None:
        """Set the leaves to images X and labels y (at most size of them: the rest of the
        batch is zeros and label 0, to be ignored) and replay the forward."""
        pad = self.size - len(y)
        if pad:
            X = np.vstack([X, np.zeros((pad, PIXELS))])
            y = np.concatenate([y, np.zeros(pad, dtype=np.intp)])
        ops.set_data(self._pixels, np.ascontiguousarray(X, dtype=np.float64).ravel())
        ops.set_data(self._onehots, self._eye[y].ravel())
        self.program.forward()

    def predictions(self) -> list[int]:
        """The class of the largest logit of each image of the last forward."""
        return [max(range(CLASSES), key=lambda j: row[j].data) for row in self.logits]


def hits(batch: CompiledBatch, y: Labels) -> int:
    """How many of the loaded images' labels y the model predicts."""
    return sum(p == label for p, label in zip(batch.predictions(), y.tolist()))


def train_epoch(
    batch: CompiledBatch,
    opt: optim.SGD,
    X: Images,
    y: Labels,
    rng: np.random.RandomState,
    on_step: Callable[[], None],
) -> tuple[float, float]:
    """One pass over the shuffled images in full batches (the remainder waits for another
    shuffle): (mean loss, training accuracy), each measured before its step's update."""
    order = rng.permutation(len(y))
    steps = len(y) // batch.size
    total_loss, total_hits = 0.0, 0
    for k in range(steps):
        chosen = order[k * batch.size : (k + 1) * batch.size]
        batch.load(X[chosen], y[chosen])
        opt.zero_grad()
        batch.program.backward()
        opt.step()
        total_loss += batch.loss.data
        total_hits += hits(batch, y[chosen])
        on_step()
    return total_loss / steps, total_hits / (steps * batch.size)


def evaluate(batch: CompiledBatch, X: Images, y: Labels) -> int:
    """How many test images the model classifies right, through the compiled batch."""
    right = 0
    for start in range(0, len(y), batch.size):
        batch.load(X[start : start + batch.size], y[start : start + batch.size])
        right += hits(batch, y[start : start + batch.size])
    return right


@contextlib.contextmanager
def lecture_exp_log(Value: Any) -> Iterator[None]:
    """micrograd 0.1.0's Value has no exp or log: the lecture's, as its users add them, for
    the duration of the block."""

    def exp(self: Any) -> Any:
        out = Value(math.exp(self.data), (self,), "exp")

        def _backward() -> None:
            self.grad += out.data * out.grad

        out._backward = _backward
        return out

    def log(self: Any) -> Any:
        out = Value(math.log(self.data), (self,), "log")

        def _backward() -> None:
            self.grad += (1 / self.data) * out.grad

        out._backward = _backward
        return out

    added = [name for name in ("exp", "log") if not hasattr(Value, name)]
    for name in added:
        setattr(Value, name, {"exp": exp, "log": log}[name])
    try:
        yield
    finally:
        for name in added:
            delattr(Value, name)


def eurekalabs_cross_entropy(logits: Sequence[Any], target: int) -> Any:
    """EurekaLabsAI/micrograd's cross_entropy, as a micrograd user writes it."""
    ex = [x.exp() for x in logits]
    denom = sum(ex)
    probs = [x / denom for x in ex]
    return -probs[target].log()


def time_micrograd(model: MLP, X: Images, y: Labels, steps: int, size: int) -> float | None:
    """Seconds micrograd 0.1.0 takes for one step of a batch of BATCH images, measured over
    `steps` steps of `size` images (scaled by BATCH / size: its graph grows with the batch),
    from model's weights; None when micrograd is not installed."""
    try:
        from micrograd import engine, nn
    except ImportError:
        return None
    state = random.getstate()  # micrograd's MLP draws its weights: leave the caller's state
    upstream = nn.MLP(PIXELS, [HIDDEN, CLASSES])
    random.setstate(state)
    for p, q in zip(upstream.parameters(), model.parameters(), strict=True):
        p.data = q.data
    seconds = 0.0
    with lecture_exp_log(engine.Value):
        for k in range(steps):
            rows = range(k * size, (k + 1) * size)
            start = time.perf_counter()
            inputs = [[engine.Value(x) for x in X[i].tolist()] for i in rows]
            logits = [upstream(x) for x in inputs]
            loss = sum(eurekalabs_cross_entropy(lg, int(y[i])) for lg, i in zip(logits, rows))
            loss = loss * (1.0 / size)
            upstream.zero_grad()
            loss.backward()
            for p in upstream.parameters():
                p.data -= LR * p.grad
            seconds += time.perf_counter() - start
    return seconds / steps * BATCH / size


def _progress(total: int, desc: str) -> tuple[Callable[[], None], Callable[[str], None], Any]:
    """(advance a step, print a line, close): a tqdm bar when tqdm is installed, else lines."""
    try:
        from tqdm import tqdm
    except ImportError:
        return lambda: None, lambda line: print(line, flush=True), lambda: None
    bar = tqdm(total=total, desc=desc, unit="step")
    return lambda: bar.update(), tqdm.write, bar.close


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def duration(seconds: float) -> str:
    """seconds as a person reads them: '2.5 s', '4.2 min', '3.1 h'."""
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_cpp digits",
        description=(
            "Train MLP(64, [32, 10]) on scikit-learn's 8x8 digits with a softmax cross-entropy, "
            "its graph compiled once and replayed, and tell how long micrograd would take."
        ),
    )
    parser.add_argument("--epochs", type=int, help=f"passes over the images (default {EPOCHS})")
    parser.add_argument(
        "--seed", type=seed, default=1337, help="random seed, 0 to 2**32 - 1 (default 1337)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run: 2 epochs (unless --epochs), micrograd timed on one step of 4 images",
    )
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 2 if args.quick else EPOCHS
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        parser.error(
            "the digits ship with scikit-learn, which is not installed: "
            "pip install 'micrograd-cpp[digits]'"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: 0 after training, 2 for bad flags, 130 on Ctrl-C."""
    args = parse_args(argv)
    try:
        run(args.epochs, args.seed, args.quick)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def run(epochs: int, seed: int, quick: bool) -> None:
    """Train, printing a line per epoch, the test accuracy, and micrograd's estimate."""
    X_train, y_train, X_test, y_test = load_digits()
    random.seed(seed)
    rng = np.random.RandomState(seed)
    model = MLP(PIXELS, [HIDDEN, CLASSES])
    backend = "cpp" if cpp_available() else "pure"
    start = time.perf_counter()
    batch = CompiledBatch(model)
    compile_seconds = time.perf_counter() - start
    print(
        f"{len(y_train)} training and {len(y_test)} test images, MLP(64, [32, 10]), batches of "
        f"{BATCH}: {len(batch.program):,} nodes compiled in {compile_seconds:.2f} s ({backend})"
    )
    opt = optim.SGD(model.parameters(), lr=LR)
    steps = len(y_train) // BATCH
    advance, write, close = _progress(epochs * steps, f"training ({backend}, compiled)")
    train_seconds, right = 0.0, 0
    try:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            loss, train_acc = train_epoch(batch, opt, X_train, y_train, rng, advance)
            seconds = time.perf_counter() - start
            train_seconds += seconds
            right = evaluate(batch, X_test, y_test)
            write(
                f"epoch {epoch}/{epochs}: loss {loss:.4f}, train accuracy {train_acc * 100:.1f}%, "
                f"test accuracy {right / len(y_test) * 100:.1f}%, {seconds:.3f} s "
                f"({seconds / steps * 1e3:.2f} ms a step)"
            )
    finally:
        close()
    per_step = train_seconds / (epochs * steps)
    print(
        f"test accuracy {right / len(y_test) * 100:.1f}% ({right} of {len(y_test)} images) after "
        f"{plural(epochs, 'epoch')}: {train_seconds / epochs:.3f} s an epoch, "
        f"{per_step * 1e3:.2f} ms a step"
    )
    n, size = MICROGRAD_QUICK_STEPS if quick else MICROGRAD_STEPS
    print(f"timing micrograd 0.1.0 over {plural(n, 'step')} of {size} images...", flush=True)
    mg_step = time_micrograd(model, X_train, y_train, n, size)
    if mg_step is None:
        print("micrograd is not installed (pip install micrograd==0.1.0): no comparison")
        return
    scaled = "" if size == BATCH else f", scaled from {size} images to {BATCH}"
    print(
        f"micrograd 0.1.0: {mg_step:.2f} s a step{scaled}, so {duration(mg_step * steps)} an "
        f"epoch and {duration(mg_step * steps * epochs)} for {plural(epochs, 'epoch')}, "
        f"{mg_step / per_step:,.0f}x as long as this run"
    )
