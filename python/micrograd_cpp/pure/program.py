"""Graph replay in pure Python: the oracle of the C++ Program (micrograd_cpp.compile)."""

from typing import Any

from .engine import _BUILTIN, _OPS, Value, topological_order


class Program:
    """A graph frozen for replay: forward() recomputes it from its leaves, backward()
    backpropagates it, without rebuilding it. Same semantics as the C++ Program."""

    def __init__(self, root: Value) -> None:
        if not isinstance(root, Value):
            raise TypeError(f"compile() takes a Value, not {type(root).__name__}")
        order = topological_order(root)
        for node in order:
            if node._custom_backward is not _BUILTIN or (node._children and node._rule is None):
                raise ValueError(
                    f"cannot compile a graph with a user-defined operation: node {node!r} "
                    f"(op {node._op!r}) has a Python _backward or a forward only Python knows; "
                    "rebuild such graphs each step instead"
                )
        index = {id(node): i for i, node in enumerate(order)}
        self._order = order
        # (first, second) operand indices; the same index twice for a unary op; None for a leaf
        self._operands = [
            (index[id(n._children[0])], index[id(n._children[-1])]) if n._children else None
            for n in order
        ]
        self._leaves = [i for i, operands in enumerate(self._operands) if operands is None]
        # forward evaluates the other nodes in the order they were made, as a rebuild does, so
        # that it fails at the same node with the same exception
        inner = [i for i, operands in enumerate(self._operands) if operands is not None]
        self._made_order = sorted(inner, key=lambda i: order[i]._made)
        # each node's op as compiled: re-initialising a node later does not change the program
        self._rules: list[tuple[Any, Any]] = [(node._rule, node._exponent) for node in order]
        self._data = [node.data for node in order]  # the values backward() differentiates at

    @property
    def root(self) -> Value:
        """The Value the program was compiled from."""
        return self._order[-1]

    def __len__(self) -> int:
        return len(self._order)

    def forward(self) -> None:
        """Recompute every non-leaf node from the leaves' current data; their grads restart
        at zero."""
        data, order = self._data, self._order
        for i in self._leaves:
            data[i] = order[i].data
        for i in self._made_order:
            a, b = self._operands[i]  # type: ignore[misc]  # not a leaf
            rule, exponent = self._rules[i]
            node = order[i]
            node.data = data[i] = _OPS[rule].forward(data[a], data[b], exponent)
            node.grad = 0.0

    def backward(self) -> None:
        """What root.backward() does, over the frozen order."""
        order, data = self._order, self._data
        grads = [node.grad for node in order]
        grads[-1] = 1.0
        try:
            for i in reversed(range(len(order))):
                operands = self._operands[i]
                if operands is None:
                    continue
                a, b = operands
                rule, exponent = self._rules[i]
                da, db = _OPS[rule].gradient(data[i], grads[i], exponent, data[a], data[b])
                grads[a] += da
                if db is not None:
                    grads[b] += db
        finally:
            for node, grad in zip(order, grads):
                node.grad = grad

    def zero_grad(self) -> None:
        """Set every grad in the graph to zero."""
        for node in self._order:
            node.grad = 0.0


def compile(root: Value) -> Program:
    """Freeze the graph under root into a Program that replays forward and backward."""
    return Program(root)
