"""trace and draw_dot: micrograd's trace_graph.ipynb, without recursion."""

import html
import json
import random
import re
import shutil
import subprocess
import sys
import warnings
from collections import Counter

import pytest
from helpers import cpp_nn

with warnings.catch_warnings():  # without the extension the package warns; the oracle still runs
    warnings.simplefilter("ignore", RuntimeWarning)
    from micrograd_cpp import viz
    from micrograd_cpp.pure import nn as pure_nn
    from micrograd_cpp.pure.engine import Value as PureValue


def simple(Value):
    """trace_graph.ipynb's first example."""
    x = Value(1.0)
    y = (x * 2 + 1).relu()
    y.backward()
    return x, y


def test_trace(backend):
    x, y = simple(backend)
    nodes, edges = viz.trace(y)
    assert isinstance(nodes, set) and isinstance(edges, set)
    assert len(nodes) == 6 and len(edges) == 5 and x in nodes and y in nodes
    assert sorted(n._op for n in nodes) == ["", "", "", "*", "+", "ReLU"]
    assert all(child in nodes and parent in nodes for child, parent in edges)
    assert {(c._op, p._op) for c, p in edges} == {("", "*"), ("*", "+"), ("", "+"), ("+", "ReLU")}


def test_trace_of_a_shared_operand(backend):
    x = backend(3.0)
    nodes, edges = viz.trace(x * x)
    assert len(nodes) == 2 and len(edges) == 1


def test_trace_does_not_recurse(backend):
    x = v = backend(0.5)
    for _ in range(5 * sys.getrecursionlimit()):
        v = v * 1.0
    nodes, _ = viz.trace(v)
    assert len(nodes) == 1 + 2 * 5 * sys.getrecursionlimit() and x in nodes


def test_trace_of_upstream_micrograd_values():
    engine = pytest.importorskip("micrograd.engine")
    _, y = simple(engine.Value)
    nodes, edges = viz.trace(y)
    assert len(nodes) == 6 and len(edges) == 5


def parse(dot):
    """(Counter of node labels, Counter of edges as (label, label)) of a Digraph's source."""
    labels, edges = {}, []
    for line in dot.source.splitlines():
        if m := re.fullmatch(r'\s*(\S+) \[label=(?:"(.*)"|(\S+))( shape=record)?\]', line):
            labels[m[1]] = m[2] or m[3]
        elif m := re.fullmatch(r"\s*(\S+) -> (\S+)", line):
            edges.append((m[1], m[2]))
    return Counter(labels.values()), Counter((labels[a], labels[b]) for a, b in edges)


def notebook_draw_dot(root):
    """trace_graph.ipynb's trace and draw_dot (recursive), to draw upstream micrograd's Values."""
    from graphviz import Digraph

    def trace(root):
        nodes, edges = set(), set()

        def build(v):
            if v not in nodes:
                nodes.add(v)
                for child in v._prev:
                    edges.add((child, v))
                    build(child)

        build(root)
        return nodes, edges

    nodes, edges = trace(root)
    dot = Digraph(format="svg", graph_attr={"rankdir": "LR"})
    for n in nodes:
        label = f"{{ data {n.data:.4f} | grad {n.grad:.4f} }}"
        dot.node(name=str(id(n)), label=label, shape="record")
        if n._op:
            dot.node(name=str(id(n)) + n._op, label=n._op)
            dot.edge(str(id(n)) + n._op, str(id(n)))
    for n1, n2 in edges:
        dot.edge(str(id(n1)), str(id(n2)) + n2._op)
    return dot


def test_draw_dot(backend):
    pytest.importorskip("graphviz")
    _, y = simple(backend)
    dot = viz.draw_dot(y)
    assert dot.format == "svg" and "rankdir=LR" in dot.source
    labels, edges = parse(dot)
    assert labels == Counter(
        {
            "{ data 1.0000 | grad 2.0000 }": 1,  # x
            "{ data 2.0000 | grad 1.0000 }": 2,  # the constant 2 and x*2
            "{ data 1.0000 | grad 1.0000 }": 1,  # the constant 1
            "{ data 3.0000 | grad 1.0000 }": 2,  # x*2+1 and its relu
            "*": 1,
            "+": 1,
            "ReLU": 1,
        }
    )
    assert sum(edges.values()) == 3 + 5  # op -> result, operand -> op
    assert edges[("+", "{ data 3.0000 | grad 1.0000 }")] == 1
    assert viz.draw_dot(y, format="png", rankdir="TB").format == "png"
    with pytest.raises(ValueError, match="rankdir"):
        viz.draw_dot(y, rankdir="RL")


def test_draw_dot_labels(backend):
    pytest.importorskip("graphviz")
    a = backend(2.0)
    a.label = "a{1}|<b>"
    labels, _ = parse(viz.draw_dot(a * 3))
    assert "{ a\\{1\\}\\|\\<b\\> | data 2.0000 | grad 0.0000 }" in labels


def unusual(Value):
    """A graph whose op names and labels are DOT syntax, and one label that is not a string."""
    a, b = Value(2.0, label=7), Value(3.0, label='q"\\x<{|}')
    c = Value(6.0, (a, b), "a:b")  # graphviz reads a:b in an edge as node a, port b
    return Value(1.0, (c,), '<i>\\n"'), a, b, c


def test_draw_dot_of_any_op_name_and_label(backend):
    pytest.importorskip("graphviz")
    d, *_ = unusual(backend)
    labels, edges = parse(viz.draw_dot(d))
    c_record = "{ data 6.0000 | grad 0.0000 }"
    assert labels["{ 7 | data 2.0000 | grad 0.0000 }"] == 1
    assert labels["a:b"] == 1
    assert edges == Counter(
        {
            ("a:b", c_record): 1,
            ("{ 7 | data 2.0000 | grad 0.0000 }", "a:b"): 1,
            ('{ q\\"\\\\x\\<\\{\\|\\} | data 3.0000 | grad 0.0000 }', "a:b"): 1,
            (c_record, '<i>\\\\n\\"'): 1,
            ('<i>\\\\n\\"', "{ data 1.0000 | grad 0.0000 }"): 1,
        }
    )


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot program is not installed")
def test_graphviz_reads_any_op_name_and_label(backend):
    """Graphviz's own parser: every edge joins two drawn nodes, every text is drawn verbatim."""
    pytest.importorskip("graphviz")
    d, a, b, c = unusual(backend)
    dot = viz.draw_dot(d)
    run = subprocess.run(["dot", "-Tjson"], input=dot.source, capture_output=True, text=True)
    assert run.returncode == 0 and not run.stderr, run.stderr
    graph = json.loads(run.stdout)
    names = [node["name"] for node in graph["objects"]]
    assert len(names) == 6  # 4 Values and 2 ops: no node made up from a port
    op = {v: next(n for n in names if n != str(id(v)) and n.startswith(str(id(v)))) for v in (c, d)}
    assert sorted((names[e["tail"]], names[e["head"]]) for e in graph["edges"]) == sorted(
        [
            (str(id(a)), op[c]),
            (str(id(b)), op[c]),
            (op[c], str(id(c))),
            (str(id(c)), op[d]),
            (op[d], str(id(d))),
        ]
    )
    svg = dot.pipe(format="svg").decode()
    texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert {"7", 'q"\\x<{|}', "a:b", '<i>\\n"'} <= set(texts)


def test_a_neuron_is_drawn_as_micrograd_draws_it(backend):
    """trace_graph.ipynb's 2D neuron: the same picture from micrograd and from us."""
    pytest.importorskip("graphviz")
    upstream = pytest.importorskip("micrograd")
    from micrograd import nn as upstream_nn

    random.seed(1337)
    theirs = upstream_nn.Neuron(2)([upstream.engine.Value(1.0), upstream.engine.Value(-2.0)])
    theirs.backward()
    nn = pure_nn if backend is PureValue else cpp_nn()
    random.seed(1337)
    ours = nn.Neuron(2)([backend(1.0), backend(-2.0)])
    ours.backward()
    assert parse(viz.draw_dot(ours)) == parse(notebook_draw_dot(theirs))


def test_without_graphviz(backend, monkeypatch):
    monkeypatch.setitem(sys.modules, "graphviz", None)
    with pytest.raises(ImportError, match=r"pip install 'micrograd-cpp\[viz\]'"):
        viz.draw_dot(backend(1.0))
