"""bench/tape_anchor.cpp, the plainest C++ tape one would write for micrograd's ops: building
it, writing a graph for it to record or replay, running it and checking that it computed what
micrograd-cpp did, bit for bit. W1 and W2 measure their floors with it (w1_expr.W1TapeAnchor,
w2_moons.TapeAnchor)."""

import json
import os
import subprocess
from pathlib import Path


def topological_order(root):
    from micrograd_cpp import _core

    return _core.topological_order(root)


TAPE_OPS = {
    "+": "add",
    "*": "mul",
    "ReLU": "relu",
    "tanh": "tanh",
}  # micrograd's labels; '**k': pow


def build_tape_anchor(tmpdir):
    """bench/tape_anchor.cpp, the plainest C++ tape, built with $CXX (or c++) in tmpdir: the
    binary's path; ImportError if that fails."""
    binary = Path(tmpdir) / "tape_anchor"
    compiler = os.environ.get("CXX", "c++")
    source = Path(__file__).with_name("tape_anchor.cpp")
    build = [compiler, "-O2", "-std=c++17", "-ffp-contract=off", str(source), "-o", str(binary)]
    try:
        done = subprocess.run(build, capture_output=True, text=True)
    except OSError as error:
        raise ImportError(f"no C++ compiler ({compiler}): {error}") from None
    if done.returncode:
        raise ImportError(f"building the tape anchor failed: {done.stderr[-500:]}")
    return binary


def tape_of(root):
    """The anchor's input for root's graph, in micrograd's topological order: (text, nodes)."""
    order = topological_order(root)
    index = {id(n): i for i, n in enumerate(order)}
    lines = [str(len(order))]
    for n in order:
        kids = [index[id(k)] for k in n._children] or [0]
        if not n._children:
            op, value = "leaf", n.data
        elif n._op.startswith("**"):
            op, value = "pow", float(n._op[2:])
        else:
            op, value = TAPE_OPS[n._op], n.data
        lines.append(f"{op} {kids[0]} {kids[-1]} {float.hex(value)}")
    return "\n".join(lines) + "\n", len(order)


def run_tape_anchor(binary, mode, rounds, tape):
    """The anchor's JSON result of `rounds` rounds of mode ('replay' or 'record') on tape."""
    done = subprocess.run(
        [str(binary), mode, str(rounds)], input=tape, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def check_tape_anchor(result, root):
    """Assert the anchor's root data and leaf grads equal root's graph's exactly (walking the
    graph gives every node a Python object: check after timing)."""
    assert float.fromhex(result["root"]) == root.data
    grads = [n.grad for n in topological_order(root) if not n._children]
    assert grads == [float.fromhex(g) for g in result["leaf_grads"]]
