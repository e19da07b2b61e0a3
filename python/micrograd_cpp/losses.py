"""Losses from the micrograd demos, building micrograd's graphs with fused sums (see ops), and a
softmax cross-entropy whose graph can be compiled once and replayed for every batch."""

from collections.abc import Collection, Iterable, Sequence, Sized
from typing import Any, Protocol, TypeVar

from . import engine, ops
from .engine import Value

T = TypeVar("T")


class Model(Protocol):
    """What the losses need of a model: micrograd_cpp.nn.MLP, or a model of your own."""

    def __call__(self, x: Sequence[Value], /) -> Value | Any: ...
    def parameters(self) -> list[Value]: ...


def _sized(items: Iterable[T]) -> Collection[T]:
    """items itself if it has a length (lists, numpy arrays), else its items in a list
    (generators, which can be read only once)."""
    return items if isinstance(items, Collection) else list(items)


def _check_lengths(loss: str, what: str, n: int, labels: Sized) -> None:
    """Raise ValueError unless there are as many labels as `what` and at least one (a mean)."""
    if n != len(labels) or n == 0:
        raise ValueError(f"{loss} needs as many labels as {what}, got {n} and {len(labels)}")


def svm_loss(
    model: Model, X: Iterable[Iterable[float]], y: Iterable[float], alpha: float = 1e-4
) -> tuple[Value, float]:
    """The max-margin loss of micrograd's demo.ipynb, with L2 regularisation: (loss, accuracy).

    Each row of X is wrapped in Values (of the model's Value class) and scored by the model;
    labels y are -1 or 1. The loss is mean(relu(1 - y*score)) + alpha * sum(p*p) over the
    model's parameters, built node for node as the notebook builds it; accuracy is the fraction
    of scores with the sign of their label.
    """
    params = model.parameters()
    Value: type[engine.Value] = type(params[0]) if params else engine.Value
    inputs, labels = [list(map(Value, xrow)) for xrow in X], _sized(y)
    _check_lengths("svm_loss", "rows of X", len(inputs), labels)
    total_loss, scores = svm_loss_graph(model, inputs, labels, alpha)
    return total_loss, accuracy(scores, labels)


def svm_loss_graph(
    model: Model, inputs: Iterable[Sequence[Value]], y: Iterable[float], alpha: float = 1e-4
) -> tuple[Value, list[Value]]:
    """svm_loss's graph over inputs that are already Values: (loss, scores).

    The scores are the model's outputs, nodes of the loss graph: after a compiled loss replays
    (micrograd_cpp.compile), they hold the new scores, for accuracy(scores, y).
    """
    rows, labels = _sized(inputs), _sized(y)
    _check_lengths("svm_loss_graph", "inputs", len(rows), labels)
    params = model.parameters()
    scores = list(map(model, rows))
    losses = [(1 + -yi * scorei).relu() for yi, scorei in zip(labels, scores)]
    data_loss = ops.sum(losses) * (1.0 / len(losses))
    reg_loss = alpha * ops.dot(params, params)  # sum((p*p for p in model.parameters()))
    return data_loss + reg_loss, scores


def accuracy(scores: Iterable[Value], y: Iterable[float]) -> float:
    """The fraction of scores (Values) with the sign of their label (-1 or 1)."""
    if hasattr(y, "tolist"):  # a numpy array: its elements as Python numbers compare faster
        y = y.tolist()
    score_list, labels = _sized(scores), _sized(y)
    _check_lengths("accuracy", "scores", len(score_list), labels)
    hits = [(yi > 0) == (scorei.data > 0) for yi, scorei in zip(labels, score_list)]
    return float(sum(hits) / len(hits))


def mse(preds: Iterable[Value], targets: Iterable[Value | float]) -> Value:
    """Mean squared error: sum((p - t)**2 for p, t in zip(preds, targets)) * (1.0 / n).

    preds are Values (or numbers), targets numbers or Values; both of length n > 0.
    """
    preds, targets = list(preds), list(targets)
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"mse needs as many targets as preds, got {len(preds)} and {len(targets)}")
    return ops.sum([(p - t) ** 2 for p, t in zip(preds, targets)]) * (1.0 / len(preds))


def cross_entropy(logits: Sequence[Value], target: int) -> Value:
    """Negative log-likelihood of class `target` under softmax(logits), as EurekaLabs writes it.

    -log(exp(logits[target]) / sum(exp(x) for x in logits)), without subtracting the max
    first: exp overflows for logits above ~709, as in EurekaLabsAI/micrograd. Its graph
    depends on target (a Python index): to compile a loss once and replay it for every batch,
    use cross_entropy_graph, which takes the label as leaf Values and is stable.
    """
    ex = [x.exp() for x in logits]
    denom = ops.sum(ex)
    # EurekaLabs normalises every probability; only the target's is part of the loss graph
    return -(ex[target] / denom).log()


def log_softmax(logits: Sequence[Value]) -> list[Value]:
    """log(softmax(logits)) as Values: x - shift - log(sum(exp(x - shift) for x in logits)).

    Softmax is shift-invariant, so any shift gives the same numbers in exact arithmetic; the
    shift only keeps exp in range. A shift frozen at compile time (a constant, or a leaf set
    once) would stay correct for every replay, but only while the logits stay near it: a logit
    more than ~709 above it overflows exp (OverflowError), and all of them ~745 below it
    underflow the sum to 0, whose log raises ValueError. A leaf that the training loop sets
    before each replay could only hold the previous forward's maximum (the loop sees the logits
    after the forward). So the shift is the logits' maximum, recomputed by every forward from
    ops that replay: max is no op, but max(m, x) is
    m + relu(x - m) (equal to the larger one up to the rounding of x - m, which is harmless: the
    largest shifted logit is within an ulp of 0, so exp never overflows and the sum is at least
    ~1, never 0). The shift's gradient is zero in exact arithmetic; in floats it is a rounding
    error of the order of 1e-16, passed on to the largest logit.
    """
    if not logits:
        raise ValueError("log_softmax needs at least one logit")
    shift = logits[0]
    for x in logits[1:]:
        shift = shift + (x - shift).relu()  # max(shift, x)
    shifted = [x - shift for x in logits]
    log_denom = ops.sum([z.exp() for z in shifted]).log()
    return [z - log_denom for z in shifted]


def cross_entropy_graph(logits: Sequence[Value], targets: Sequence[Value | float]) -> Value:
    """-sum(t * log p for t, p in zip(targets, softmax(logits))): cross-entropy against targets,
    a distribution over the classes, one-hot for a label (one_hot(label, len(logits))).

    With the targets as leaf Values, the graph does not depend on the label: compile it once
    (micrograd_cpp.compile) and set the targets' data for each batch before a replay. It equals
    cross_entropy(logits, label) to 1e-12, its gradient too, and stays finite and accurate where
    that one overflows or its gradient underflows (see log_softmax for the shift that keeps it
    stable).
    """
    if len(logits) != len(targets) or not logits:
        raise ValueError(
            f"cross_entropy_graph needs as many targets as logits, got {len(logits)} and "
            f"{len(targets)}"
        )
    return -ops.dot(targets, log_softmax(logits))


def one_hot(label: int, classes: int) -> list[float]:
    """[0.0] * classes with 1.0 at label: the targets of cross_entropy_graph for that label."""
    if not 0 <= label < classes:
        raise ValueError(f"label {label} is not one of {classes} classes")
    return [float(j == label) for j in range(classes)]
