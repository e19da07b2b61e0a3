"""micrograd's Value in pure Python, with micrograd-cpp's exact semantics.

This is the test oracle of the C++ engine (every result must match it bit for bit) and the
fallback backend. It differs from karpathy/micrograd only where micrograd-cpp documents a
deviation: data and grad are always floats, children keep their order (so the topological
order, and with it every rounding, is deterministic), and the sort is iterative.
"""

import copy
import itertools
import math
import numbers
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, NoReturn, SupportsFloat, SupportsIndex, TypeAlias

# What Value(x) and the operators take as a number: anything with __float__ or __index__.
Number: TypeAlias = SupportsFloat | SupportsIndex


def _as_float(x: Number) -> float:
    """Convert like the C API's PyFloat_AsDouble (as Value(x) does): a float's own value, else
    __float__, else __index__; never a string."""
    if isinstance(x, float):
        return float.__float__(x)
    kind = type(x)
    if hasattr(kind, "__float__") or hasattr(kind, "__index__"):
        return float(x)
    raise TypeError(f"must be real number, not {kind.__name__}")


def _operand_float(x: Number) -> float:
    """A number operand's value, as Python's float arithmetic reads it: a float's or an int's
    own value (whatever its __float__ says), any other number's float()."""
    if isinstance(x, float):
        return float.__float__(x)
    if isinstance(x, int):
        return int.__float__(x)
    return _as_float(x)


_BUILTIN = object()  # _custom_backward when the user assigned no _backward

# Stamps the nodes the operators make: a node is made after its operands, so the stamps order a
# graph as a program that builds it evaluates it (a replay's forward follows that order).
_next_made = itertools.count().__next__


def _is_number(x: object) -> bool:
    return isinstance(x, (int, float, numbers.Real)) and not isinstance(x, Value)


def _not_a_number(ufunc: str, a: object, b: object) -> "Value":
    """numpy arrays hand their operators to Value (it sets __array_priority__, so that numpy
    scalars do too, much faster than numpy's own path): apply the ufunc element by element, as
    numpy would have. Anything else is not an operand."""
    numpy = sys.modules.get("numpy")
    array = b if isinstance(a, Value) else a
    if numpy is None or not isinstance(array, numpy.ndarray):
        return NotImplemented  # type: ignore[no-any-return]
    return getattr(numpy, ufunc)(a, b)  # type: ignore[no-any-return]  # an array of Values


def _pow(x: float, e: float) -> float:
    """float ** float as Python computes it, but a complex result raises ValueError."""
    r: float = x**e
    if type(r) is complex:
        raise ValueError("negative number cannot be raised to a fractional power")
    return r


def _sigmoid(x: float) -> float:
    """1 / (1 + exp(-x)), written so that exp never overflows: exp(x) / (1 + exp(x)) for x < 0.
    So sigmoid never raises (sigmoid(-1000) is 0.0); the C++ engine computes the same."""
    if x >= 0:
        return 1 / (1 + math.exp(-x))
    e = math.exp(x)
    return e / (1 + e)


class _Op(NamedTuple):
    """A built-in op's facts: the C++ engine's table (cpp/rules.hpp, Note [Op table]) mirrored.

    forward(a, b, e) is the op's value on operand values a and b (b is None for a unary op, e
    for any op but '**'); gradient(out, g, e, a, b) is what a node (value out, grad g) adds to
    its operands' grads (b's is None for a unary op): micrograd's local chain rule.
    """

    arity: int
    forward: Callable[[float, Any, Any], Any]
    gradient: Callable[[float, float, Any, float, Any], tuple[float, float | None]]


# By the label its nodes show as _op ('**' nodes show their exponent too), micrograd's formulas.
_OPS: dict[str, _Op] = {
    "+": _Op(2, lambda a, b, e: a + b, lambda out, g, e, a, b: (g, g)),
    "*": _Op(2, lambda a, b, e: a * b, lambda out, g, e, a, b: (b * g, a * g)),
    "**": _Op(
        1, lambda a, b, e: _pow(a, e), lambda out, g, e, a, b: ((e * _pow(a, e - 1)) * g, None)
    ),
    "ReLU": _Op(
        1, lambda a, b, e: 0.0 if a < 0 else a, lambda out, g, e, a, b: ((out > 0) * g, None)
    ),
    "tanh": _Op(
        1, lambda a, b, e: math.tanh(a), lambda out, g, e, a, b: ((1 - _pow(out, 2)) * g, None)
    ),
    "exp": _Op(1, lambda a, b, e: math.exp(a), lambda out, g, e, a, b: (out * g, None)),
    "log": _Op(1, lambda a, b, e: math.log(a), lambda out, g, e, a, b: ((1 / a) * g, None)),
    "sigmoid": _Op(
        1, lambda a, b, e: _sigmoid(a), lambda out, g, e, a, b: (out * (1 - out) * g, None)
    ),
}


def topological_order(root: "Value") -> list["Value"]:
    """Nodes under root, children before parents: micrograd's build_topo without recursion.

    Children are visited in operand order, so the order (and every rounding) is reproducible.
    """
    topo: list[Value] = []
    visited = {id(root)}
    stack = [(root, iter(root._children))]
    while stack:
        node, kids = stack[-1]
        for child in kids:
            if id(child) not in visited:
                visited.add(id(child))
                stack.append((child, iter(child._children)))
                break
        else:
            stack.pop()
            topo.append(node)
    return topo


class Value:
    """stores a single scalar value and its gradient"""

    # _rule names the built-in chain rule (None for leaves and user-made nodes); _exponent is
    # the float exponent of a '**' node.
    __slots__ = {
        "__dict__": None,
        "_custom_backward": None,
        "_data": None,
        "_exponent": None,
        "_first": "an operator's first operand (None for a node made by Value())",
        "_given": "the children given to Value(): a tuple, () for a leaf",
        "_grad": None,
        "_made": "when the operators made this node (leaves made by Value() have no stamp)",
        "_op": "the op that produced this node ('' for a leaf), a label for drawing",
        "_rule": None,
        "_second": "an operator's second operand (None for a unary op's node)",
    }
    _first: "Value | None"
    _second: "Value | None"
    _given: tuple["Value", ...]
    _custom_backward: Any  # a _backward the user assigned, or _BUILTIN
    _data: float
    _exponent: float | None
    _grad: float
    _made: int
    _op: str
    _rule: str | None
    label = ""
    __array_priority__ = 1000.0

    def __init__(
        self, data: Number, _children: Iterable["Value"] = (), _op: str = "", label: str = ""
    ) -> None:
        """Initialize self: a leaf holding float(data), or a node over _children made by _op."""
        # Check everything first: a failed (re-)initialisation changes nothing.
        data = _as_float(data)
        children = tuple(_children)
        for child in children:
            if not isinstance(child, Value):
                raise TypeError(f"children must be Values, not {type(child).__name__}")
        if children and getattr(self, "_children", None) is not None:  # re-initialised
            for child in children:
                if any(node is self for node in topological_order(child)):
                    raise ValueError("a Value cannot be its own descendant")
        self._data, self._grad = data, 0.0
        self._first = self._second = None
        self._given = children
        self._op = _op
        self._rule = self._exponent = None
        self._custom_backward = _BUILTIN
        if label:
            self.label = label

    data = property(lambda self: self._data, lambda self, x: setattr(self, "_data", _as_float(x)))
    grad = property(lambda self: self._grad, lambda self, x: setattr(self, "_grad", _as_float(x)))

    # An operator's node keeps its operands in two slots rather than a tuple: CPython keeps up to
    # 2,000 freed tuples of each size for reuse, and after a big graph is dropped those left
    # scattered over pymalloc's arenas would keep tens of MiB mapped until a full collection.
    @property
    def _children(self) -> tuple["Value", ...]:
        """the operand Values in order (micrograd's _prev is their set)"""
        first, second = self._first, self._second
        if first is None:
            return self._given
        return (first,) if second is None else (first, second)

    @property
    def _prev(self) -> set["Value"]:
        """the set of distinct operand Values, as micrograd keeps them (_children has their
        order)"""
        return set(self._children)

    @property
    def _backward(self) -> Callable[[], Any]:
        """this node's local chain rule: adds its share of the grad to its operands' grads.
        Assign a function to give your own op its rule; del restores the built-in one."""
        fn = self._custom_backward
        return self._local_rule if fn is _BUILTIN else fn

    @_backward.setter
    def _backward(self, fn: Callable[[], Any]) -> None:
        self._custom_backward = fn

    @_backward.deleter
    def _backward(self) -> None:
        self._custom_backward = _BUILTIN

    @staticmethod
    def _node(
        data: float,
        first: "Value | None",
        second: "Value | None",
        op: str,
        rule: str | None,
        exponent: float | None = None,
    ) -> "Value":
        out = object.__new__(Value)
        out._data, out._grad, out._op = data, 0.0, op
        out._first, out._second, out._given = first, second, ()
        out._rule, out._exponent, out._custom_backward = rule, exponent, _BUILTIN
        out._made = _next_made()
        return out

    def _clone(self, children: Sequence["Value"]) -> "Value":
        """A new node of this type with this op, data, grad and exponent over `children`."""
        children = tuple(children)
        arity = _OPS[self._rule].arity if self._rule else (-1 if self._children else 0)
        if (len(children) != arity) if arity >= 0 else not children:
            raise ValueError("_clone() needs as many children as the op has")
        out = object.__new__(type(self))
        out._data, out._grad, out._op = self._data, self._grad, self._op
        out._first = out._second = None
        out._given = ()
        if self._rule:
            out._first, out._second = children[0], children[1] if arity == 2 else None
        else:
            out._given = children
        out._rule, out._exponent = self._rule, self._exponent
        out._custom_backward = self._custom_backward
        out._made = _next_made()
        return out

    def __copy__(self) -> "Value":
        """A new node with this one's op, data, grad, operands and attributes."""
        out = self._clone(self._children)
        for name, value in vars(self).items():
            setattr(out, name, value)
        return out

    def __deepcopy__(self, memo: dict[int, Any]) -> "Value":
        """A copy of the whole graph under this Value (shared nodes stay shared), made without
        recursion so that deep graphs copy too."""
        for node in topological_order(self):
            if id(node) not in memo:
                clone = node._clone([memo[id(child)] for child in node._children])
                memo[id(node)] = clone
                for name, value in vars(node).items():
                    setattr(clone, name, copy.deepcopy(value, memo))
        return memo[id(self)]  # type: ignore[no-any-return]

    def __reduce_ex__(self, protocol: SupportsIndex) -> NoReturn:
        raise TypeError(f"cannot pickle {type(self).__name__!r} object: pickle its .data instead")

    def _local_rule(self) -> None:
        """Apply this node's chain rule, micrograd's formula in micrograd's order."""
        a = self._first
        if self._rule is None or a is None:  # a leaf, or a node made by Value()
            return
        b = a if self._second is None else self._second
        rule = _OPS[self._rule].gradient
        da, db = rule(self.data, self.grad, self._exponent, a.data, b.data)
        a.grad += da
        if db is not None:
            b.grad += db

    def __add__(self, other: "Value | float") -> "Value":
        if not isinstance(other, Value):
            if not _is_number(other):
                return _not_a_number("add", self, other)
            other = Value._node(_operand_float(other), None, None, "", None)
        return Value._node(_OPS["+"].forward(self.data, other.data, None), self, other, "+", "+")

    def __mul__(self, other: "Value | float") -> "Value":
        if not isinstance(other, Value):
            if not _is_number(other):
                return _not_a_number("multiply", self, other)
            other = Value._node(_operand_float(other), None, None, "", None)
        return Value._node(_OPS["*"].forward(self.data, other.data, None), self, other, "*", "*")

    def __pow__(self, other: float) -> "Value":
        if isinstance(other, Value):
            raise TypeError("only supporting int/float powers, not a Value exponent")
        if not _is_number(other):
            return _not_a_number("power", self, other)
        e = _operand_float(other)
        return Value._node(
            _OPS["**"].forward(self.data, None, e), self, None, f"**{other}", "**", e
        )

    def _unary(self, rule: str) -> "Value":
        return Value._node(_OPS[rule].forward(self.data, None, None), self, None, rule, rule)

    def relu(self) -> "Value":
        return self._unary("ReLU")

    def tanh(self) -> "Value":
        return self._unary("tanh")

    def exp(self) -> "Value":
        return self._unary("exp")

    def log(self) -> "Value":
        return self._unary("log")

    def sigmoid(self) -> "Value":
        return self._unary("sigmoid")

    def backward(self) -> None:
        topo = topological_order(self)
        self.grad = 1.0
        for v in reversed(topo):
            v._backward()

    def __neg__(self) -> "Value":  # -self
        return self * -1

    def __radd__(self, other: float) -> "Value":  # other + self
        if not _is_number(other):
            return _not_a_number("add", other, self)
        return self + other

    def __sub__(self, other: "Value | float") -> "Value":  # self - other
        if not isinstance(other, Value) and not _is_number(other):
            return _not_a_number("subtract", self, other)
        return self + (-other)

    def __rsub__(self, other: float) -> "Value":  # other + (-self)
        if not _is_number(other):
            return _not_a_number("subtract", other, self)
        return (-self) + other

    def __rmul__(self, other: float) -> "Value":  # other * self
        if not _is_number(other):
            return _not_a_number("multiply", other, self)
        return self * other

    def __truediv__(self, other: "Value | float") -> "Value":  # self * other**-1
        if not isinstance(other, Value) and not _is_number(other):
            return _not_a_number("true_divide", self, other)
        return self * other**-1

    def __rtruediv__(self, other: float) -> "Value":  # other * self**-1
        if not _is_number(other):
            return _not_a_number("true_divide", other, self)
        return self**-1 * other

    def __repr__(self) -> str:
        return f"Value(data={self.data}, grad={self.grad})"
