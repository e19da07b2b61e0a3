"""micrograd's demo.ipynb as a program: an MLP learns the two moons (python -m micrograd_cpp).

The model, data, loss and the notebook's SGD schedule are the notebook's, so with the default
seed the run reproduces it step for step; the pure backend is timed on the same steps for the
speed-up, and its losses are checked to be the very same floats. With --compiled the loss graph
is built once and replayed each step (micrograd_cpp.compile), and timed against rebuilding it.
"""

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from . import losses, optim
from .datasets import make_moons
from .program import compile as compile_graph
from .pure import nn as pure_nn

if TYPE_CHECKING:
    from .nn import MLP

# on_step(k, loss, accuracy), called after each step
OnStep = Callable[[int, float, float], None]
History = list[tuple[float, float]]

BACKENDS = ("cpp", "pure")


def cpp_available() -> bool:
    from . import _backend

    return _backend.CppValue is not None


def nn_module(backend: str) -> ModuleType:
    """micrograd_cpp.nn for 'cpp' (it must be the active engine); the oracle's nn for 'pure'."""
    if backend == "pure":
        return pure_nn
    if not cpp_available():
        raise RuntimeError(
            "the C++ backend is not active (the extension is not built, or "
            "MICROGRAD_CPP_BACKEND=pure is set): use --backend pure"
        )
    from . import nn

    return nn


def setup(
    backend: str = "cpp", seed: int = 1337, n_samples: int = 100
) -> tuple["MLP", NDArray[np.float64], NDArray[np.intp]]:
    """The notebook's start: seeds, the moons (y in {-1, 1}) and MLP(2, [16, 16, 1])."""
    np.random.seed(seed)
    random.seed(seed)
    X, y = make_moons(n_samples, noise=0.1, seed=seed)
    model = nn_module(backend).MLP(2, [16, 16, 1])
    return model, X, y


def learning_rate(k: int, steps: int) -> float:
    """The notebook's schedule, 1.0 - 0.9*k/100, stretched when there are more than 100 steps."""
    return 1.0 - 0.9 * k / max(steps, 100)


def train(
    model: "MLP",
    X: NDArray[np.float64],
    y: NDArray[np.intp],
    steps: int,
    optimizer: str = "sgd",
    on_step: OnStep | None = None,
    horizon: int | None = None,
    compiled: bool = False,
) -> History:
    """The notebook's loop; returns the (loss, accuracy) of each step, measured before its update.

    The learning rate follows learning_rate(k, horizon), horizon defaulting to steps: a shorter
    run with the horizon of a longer one replays that run's first steps.

    compiled builds the loss graph once and compiles it: each later step replays its forward
    on the updated parameters instead of building it again. The losses are the very same.

    optimizer 'sgd' is the notebook's `p.data -= learning_rate * p.grad` (optim.SGD performs
    exactly that arithmetic, in one call per step on C++); 'adamw' is optim.AdamW with the same
    schedule scaled to lr 0.05 (no weight decay: the loss has its own L2 term).
    """
    opt: optim.SGD | optim.AdamW
    if optimizer == "sgd":
        opt, lr0 = optim.SGD(model.parameters(), lr=1.0), 1.0
    elif optimizer == "adamw":
        opt, lr0 = optim.AdamW(model.parameters(), lr=0.05, weight_decay=0.0), 0.05
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adamw', not {optimizer!r}")
    history, horizon = [], steps if horizon is None else horizon
    if compiled:
        Value = type(model.parameters()[0])
        inputs = [list(map(Value, xrow)) for xrow in X]  # fixed: only the parameters change
        total_loss, scores = losses.svm_loss_graph(model, inputs, y)
        program = compile_graph(total_loss)
    for k in range(steps):
        # forward
        if not compiled:
            total_loss, acc = losses.svm_loss(model, X, y)
        else:
            if k > 0:  # the graph was just built for the first step
                program.forward()
            acc = losses.accuracy(scores, y)
        # backward
        opt.zero_grad()  # model.zero_grad(), in one call on C++
        (program if compiled else total_loss).backward()
        # update
        opt.lr = lr0 * learning_rate(k, horizon)
        opt.step()
        history.append((total_loss.data, acc))
        if on_step is not None:
            on_step(k, total_loss.data, acc)
    return history


def run(
    steps: int = 100,
    seed: int = 1337,
    backend: str = "cpp",
    optimizer: str = "sgd",
    on_step: OnStep | None = None,
    horizon: int | None = None,
    compiled: bool = False,
) -> tuple["MLP", NDArray[np.float64], NDArray[np.intp], History, float]:
    """Set up and train; returns (model, X, y, history, seconds spent training)."""
    model, X, y = setup(backend, seed)
    start = time.perf_counter()
    history = train(model, X, y, steps, optimizer, on_step, horizon, compiled)
    return model, X, y, history, time.perf_counter() - start


def plot_decision_boundary(
    model: "MLP", X: NDArray[np.float64], y: NDArray[np.intp], path: str | Path
) -> None:
    """The notebook's last cell: the model's decision regions and the data, saved to path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Value = type(model.parameters()[0])
    h = 0.25
    x_min, x_max = X[:, 0].min() - 1, X[:, 0].max() + 1
    y_min, y_max = X[:, 1].min() - 1, X[:, 1].max() + 1
    xx, yy = np.meshgrid(np.arange(x_min, x_max, h), np.arange(y_min, y_max, h))
    Xmesh = np.c_[xx.ravel(), yy.ravel()]
    inputs = [list(map(Value, xrow)) for xrow in Xmesh]
    scores = list(map(model, inputs))
    Z = np.array([s.data > 0 for s in scores]).reshape(xx.shape)
    fig = plt.figure()
    plt.contourf(xx, yy, Z, cmap=plt.cm.Spectral, alpha=0.8)
    plt.scatter(X[:, 0], X[:, 1], c=y, s=40, cmap=plt.cm.Spectral)
    plt.xlim(xx.min(), xx.max())
    plt.ylim(yy.min(), yy.max())
    fig.savefig(path)
    plt.close(fig)


def draw_neuron(model: "MLP", X: NDArray[np.float64], path: str | Path) -> Path:
    """One neuron of the first layer on the first data point, drawn by viz.draw_dot.

    The image format is path's suffix. Returns the file written: path, or, when Graphviz's
    `dot` program is missing (or path ends in .dot), the DOT source as path with suffix .dot.
    """
    import graphviz

    from .viz import draw_dot

    path = Path(path)
    neuron = model.layers[0].neurons[0]
    Value = type(neuron.b)
    out = neuron([Value(x) for x in X[0]])
    out.backward()
    fmt = path.suffix[1:].lower()
    dot = draw_dot(out, format=fmt)
    if fmt != "dot":
        try:
            path.write_bytes(dot.pipe(format=fmt))
            return path
        except graphviz.ExecutableNotFound:
            pass
    source = path.with_suffix(".dot")
    source.write_text(dot.source)
    return source


def _missing(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return True
    return False


def _plot_formats() -> set[str]:
    from matplotlib.backend_bases import FigureCanvasBase

    return set(FigureCanvasBase.get_supported_filetypes())


def _dot_formats() -> set[str]:
    import graphviz

    return set(graphviz.FORMATS)


def output_path(flag: str, value: str, formats: set[str], default: str) -> Path:
    """The file a flag will write: its value, with suffix .default if it has none.

    Raises ValueError (the message names the flag) for a format not in formats, or for a
    file that cannot be written, so that the demo fails before it trains, not after.
    """
    path = Path(value)
    if not path.name or value.endswith(("/", os.sep)):
        raise ValueError(f"{flag}: {value!r} names no file")
    if not path.suffix:
        path = path.with_suffix(f".{default}")
    fmt = path.suffix[1:].lower()
    if fmt not in formats:
        raise ValueError(f"{flag}: unknown format {fmt!r} (known: {', '.join(sorted(formats))})")
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{flag}: {parent} is not an existing directory")
    if path.is_dir():
        raise ValueError(f"{flag}: {path} is a directory")
    writable = os.access(path, os.W_OK) if path.exists() else os.access(parent, os.W_OK)
    if not writable:
        raise ValueError(f"{flag}: {path} cannot be written (permission denied)")
    return path


def seed(text: str) -> int:
    """--seed: an integer numpy's global generator accepts."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1, not {value}")
    return value


def _progress(
    steps: int, desc: str, line: Callable[[int, float, float], str]
) -> tuple[OnStep, Callable[[], None]]:
    """(on_step callback, close): a tqdm bar named desc when tqdm is installed, else each step
    printed as line(k, loss, accuracy) returns it."""
    try:
        from tqdm import tqdm
    except ImportError:

        def print_step(k: int, loss: float, acc: float) -> None:
            print(line(k, loss, acc), flush=True)

        return print_step, lambda: None
    bar = tqdm(total=steps, desc=desc, unit="step")

    def on_step(k: int, loss: float, acc: float) -> None:
        bar.set_postfix_str(f"loss {loss:.6f}, accuracy {acc * 100:.1f}%", refresh=False)
        bar.update()

    return on_step, bar.close


def _timed_run(
    steps: int, seed: int, backend: str, optimizer: str, horizon: int, desc: str
) -> tuple["MLP", NDArray[np.float64], NDArray[np.intp], History, float]:
    """run() of a comparison, its progress shown (it takes seconds on the pure backend)."""
    on_step, close = _progress(steps, desc, lambda k, *_: f"{desc}: step {k + 1} of {steps}")
    try:
        return run(steps, seed, backend, optimizer, on_step, horizon)
    finally:
        close()


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: 0 when the backends' losses agreed, 2 for bad flags, 130 on Ctrl-C."""
    try:
        return demo(*parse_args(argv))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130  # 128 + SIGINT, as a shell reports it


def parse_args(
    argv: Sequence[str] | None,
) -> tuple[argparse.Namespace, str, Path | None, Path | None]:
    """(flags, backend, plot file, dot file), every flag checked before anything runs."""
    parser = argparse.ArgumentParser(
        prog="python -m micrograd_cpp",
        description="Train micrograd's demo MLP on the two moons and time it against pure Python.",
        epilog="python -m micrograd_cpp digits --help: classify handwritten digits instead.",
    )
    parser.add_argument("--steps", type=int, default=100, help="training steps (default 100)")
    parser.add_argument(
        "--seed", type=seed, default=1337, help="random seed, 0 to 2**32 - 1 (default 1337)"
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, help="engine (default: cpp when available, else pure)"
    )
    parser.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    parser.add_argument(
        "--compiled",
        action="store_true",
        help="build the loss graph once and replay it each step (micrograd_cpp.compile)",
    )
    parser.add_argument(
        "--plot", metavar="FILE.png", help="save the decision boundary (no suffix: .png)"
    )
    parser.add_argument(
        "--dot", metavar="FILE.svg", help="draw one neuron's graph (no suffix: .svg)"
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be at least 1")
    if args.plot is not None and _missing("matplotlib"):
        parser.error("--plot needs matplotlib: pip install 'micrograd-cpp[plot]'")
    if args.dot is not None and _missing("graphviz"):
        parser.error("--dot needs the graphviz package: pip install 'micrograd-cpp[viz]'")
    plot = dot = None
    try:
        if args.plot is not None:
            plot = output_path("--plot", args.plot, _plot_formats(), "png")
        if args.dot is not None:
            dot = output_path("--dot", args.dot, _dot_formats(), "svg")
    except ValueError as error:
        parser.error(str(error))
    backend = args.backend or ("cpp" if cpp_available() else "pure")
    if backend == "cpp" and not cpp_available():
        parser.error(
            "the C++ backend is not available (extension not built, or "
            "MICROGRAD_CPP_BACKEND=pure is set): use --backend pure"
        )
    return args, backend, plot, dot


def demo(args: argparse.Namespace, backend: str, plot: Path | None, dot: Path | None) -> int:
    """Train, report, compare with the pure backend, draw; 0 when the losses agreed."""
    on_step, close = _progress(
        args.steps,
        f"training ({backend})",
        lambda k, loss, acc: f"step {k} loss {loss}, accuracy {acc * 100}%",
    )
    try:
        model, X, y, history, seconds = run(
            args.steps, args.seed, backend, args.optimizer, on_step, compiled=args.compiled
        )
    finally:
        close()
    _, accuracy = losses.svm_loss(model, X, y)
    last_loss, last_accuracy = history[-1]  # measured before the last step's update
    print(
        f"final accuracy {accuracy * 100:.1f}% after the last update (before it, step "
        f"{args.steps - 1}: loss {last_loss:.6g}, accuracy {last_accuracy * 100:.1f}%)"
    )
    per_step = seconds / args.steps
    mode = f"{backend} compiled" if args.compiled else backend
    print(f"{mode}: {seconds:.3f} s for {args.steps} steps, {per_step * 1e3:.2f} ms/step")

    same = True
    if args.compiled:  # the same run rebuilding the graph each step (on pure, its first steps)
        n = args.steps if backend == "cpp" else min(args.steps, 5)
        *_, rebuilt, rebuilt_seconds = _timed_run(
            n, args.seed, backend, args.optimizer, args.steps, f"rebuilding ({backend})"
        )
        same = rebuilt == history[:n]
        steps = "" if n == args.steps else f" over the first {n} steps"
        print(
            f"{backend}: {rebuilt_seconds / n * 1e3:.2f} ms/step rebuilding the graph each step"
            f"{steps}, losses {'identical' if same else 'DIFFERENT'}: compiled "
            f"{rebuilt_seconds / n / per_step:.1f}x faster than rebuilding the graph each step"
        )
    if backend == "cpp":
        n = min(args.steps, 5)
        *_, pure_history, pure_seconds = _timed_run(
            n, args.seed, "pure", args.optimizer, args.steps, "timing pure Python"
        )
        same_as_pure = pure_history == history[:n]
        same = same and same_as_pure
        print(
            f"pure: {pure_seconds / n * 1e3:.1f} ms/step over the first {n} steps, losses "
            f"{'identical' if same_as_pure else 'DIFFERENT'}: "
            f"{'compiled ' if args.compiled else ''}C++ speed-up {pure_seconds / n / per_step:.1f}x"
        )
    if plot:
        plot_decision_boundary(model, X, y, plot)
        print(f"decision boundary saved to {plot}")
    if dot:
        written = draw_neuron(model, X, dot)
        if written == dot:
            print(f"neuron graph saved to {written}")
        else:
            print(
                f"neuron graph: Graphviz's `dot` program is not installed, so it was not "
                f"rendered; its DOT source is in {written}"
            )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
