"""Drawing a Value's graph, as micrograd's trace_graph.ipynb does, without recursion.

draw_dot needs the optional graphviz package (pip install 'micrograd-cpp[viz]'); rendering the
returned Digraph to an image also needs Graphviz's `dot` program.
"""

from collections.abc import Iterable
from typing import Any

from .engine import Value


def _children(v: Value) -> Iterable[Value]:
    """A node's operands: in order where the Value keeps them, else micrograd's set `_prev`."""
    kids = getattr(v, "_children", None)
    return v._prev if kids is None else kids


def _walk(root: Value) -> tuple[list[Value], list[tuple[Value, Value]]]:
    """(nodes, edges) under root in a reproducible order; an edge is (child, parent)."""
    nodes: list[Value] = []
    edges: list[tuple[Value, Value]] = []
    seen = {id(root)}
    stack = [root]
    while stack:
        v = stack.pop()
        nodes.append(v)
        for child in _children(v):
            edges.append((child, v))
            if id(child) not in seen:
                seen.add(id(child))
                stack.append(child)
    return nodes, edges


def trace(root: Value) -> tuple[set[Value], set[tuple[Value, Value]]]:
    """The set of nodes under root and the set of edges (child, parent) between them."""
    nodes, edges = _walk(root)
    return set(nodes), set(edges)


def _escape(text: str) -> str:
    """Any label as literal text in a record: DOT's escapes and the record's own syntax."""
    for c in '\\"{}|<>':
        text = text.replace(c, "\\" + c)
    return text


def _literal(text: str) -> str:
    """Any label as literal text in a plain node: backslashes and quotes escaped, never HTML."""
    from graphviz import nohtml

    literal: str = nohtml(text.replace("\\", "\\\\").replace('"', '\\"'))  # a str subclass
    return literal


def draw_dot(root: Value, format: str = "svg", rankdir: str = "LR") -> Any:
    """The graph under root as a graphviz.Digraph: micrograd's trace_graph.ipynb picture.

    Each Value is a record `{ data %.4f | grad %.4f }` (with its label first if it has one);
    each operation is a small node, e.g. '+', feeding the Value it produced.
    format: png | svg | ...;  rankdir: LR (left to right) | TB (top to bottom).
    """
    try:
        from graphviz import Digraph
    except ImportError as e:
        raise ImportError(
            "draw_dot needs the graphviz package: pip install 'micrograd-cpp[viz]'"
        ) from e
    if rankdir not in ("LR", "TB"):
        raise ValueError(f"rankdir must be 'LR' or 'TB', not {rankdir!r}")
    nodes, edges = _walk(root)
    dot = Digraph(format=format, graph_attr={"rankdir": rankdir})
    # Node names are digits (and 'op'): an op's text, such as 'a:b', in a name would be read in
    # an edge as node:port. Labels are any object, drawn as str() shows it.
    for n in nodes:
        uid, label = str(id(n)), getattr(n, "label", "")
        label = "" if label is None else str(label)
        fields = f"data {n.data:.4f} | grad {n.grad:.4f}"
        record = f"{{ {_escape(label)} | {fields} }}" if label else f"{{ {fields} }}"
        dot.node(name=uid, label=record, shape="record")
        if n._op:
            dot.node(name=uid + "op", label=_literal(str(n._op)))
            dot.edge(uid + "op", uid)
    for n1, n2 in dict.fromkeys(edges):  # an operand used twice (x*x) is drawn once
        dot.edge(str(id(n1)), str(id(n2)) + "op")
    return dot
