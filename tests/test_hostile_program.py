"""compile()'s Program against Python code that fights back: an instance made without compile(),
a memory limit. Each case runs in a fresh interpreter, so that a crash fails its test instead of
the run."""

import pytest
from helpers import run_isolated, run_with_memory_limit, under_sanitizer
from micrograd_cpp.pure import program as pure_program
from micrograd_cpp.pure.engine import Value as PureValue

GRAPH = """
    x, y = Value(0.5), Value(-1.5)
    root = (x * y + x.tanh()) * y
"""


def pure_replay():
    """The oracle's program over GRAPH: its size and the grads after forward and backward."""
    x, y = PureValue(0.5), PureValue(-1.5)
    root = (x * y + x.tanh()) * y
    prog = pure_program.compile(root)
    prog.forward()
    prog.backward()
    return len(prog), x.grad, y.grad, root.data


WAYS = {
    "Program()": "Program()",
    "Program.__new__": "Program.__new__(Program)",
    "object.__new__": "object.__new__(Program)",
    "the base's __new__": "Program.__mro__[1].__new__(Program)",
    "a subclass": "type('Sub', (Program,), {})()",
    "a subclass's __new__": "(lambda S: S.__new__(S))(type('Sub', (Program,), {}))",
    "copy": "copy.copy(prog)",
    "__init__ again": "prog.__init__()",
    "Program.__init__": "Program.__init__(prog)",
}


@pytest.mark.parametrize("way", WAYS)
def test_only_compile_makes_a_program(way):
    """An instance without its C++ object would crash every method: Python cannot make one,
    and a refused attempt leaves a compiled program working."""
    got = run_isolated(
        f"""
    import copy
    from micrograd_cpp._core import Program, Value, compile
    {GRAPH}
    prog = compile(root)
    try:
        made = {WAYS[way]}
        error = None
    except TypeError as e:
        made, error = None, str(e)
    prog.forward()
    prog.backward()
    print((made, error, (len(prog), x.grad, y.grad, root.data), prog.root is root))
    """
    )
    made, error, replay, same_root = got
    assert made is None and error
    assert replay == pure_replay() and same_root
    if way == "Program()":
        assert error == "cannot create 'micrograd_cpp._core.Program' instances"


@pytest.mark.skipif(under_sanitizer(), reason="AddressSanitizer aborts under an address limit")
@pytest.mark.parametrize("margin_mb", [0, 8, 16, 24, 32, 40, 48, 52, 96])
def test_out_of_memory_in_compile_is_memory_error(margin_mb):
    """Some limit fails each of compile()'s allocations in turn (the graph's order, the program's
    arrays); each failure is MemoryError, and compile() works once memory is back."""
    n = 200_000
    setup = f"""
    import micrograd_cpp
    from micrograd_cpp._core import Value, compile

    x = Value(0.5)
    root = micrograd_cpp.sum([x * float(i % 4) for i in range({n})])
    """
    after = """
    prog = compile(root)
    prog.forward()
    prog.backward()
    print((limited, x.grad))
    """
    got = run_with_memory_limit(setup, "compile(root)", after, margin_mb)
    # x's grad is a sum of small integers: exact in any order.
    assert got[1] == float(sum(i % 4 for i in range(n)))
    if margin_mb == 0:
        assert got[0] == "MemoryError"
    else:
        assert got[0] in ("MemoryError", None)
