"""Helpers shared by the test modules (imported as `helpers`: pytest puts tests/ on the path)."""

import ast
import ctypes
import os
import subprocess
import sys
import textwrap

import pytest

# Each backend's engine module, by name.
MODULES = {"cpp": "micrograd_cpp._core", "pure": "micrograd_cpp.pure.engine"}


def cpp_nn():
    """micrograd_cpp.nn, which the cpp tests need running on the C++ engine."""
    from micrograd_cpp import demo, nn

    if not demo.cpp_available():
        if os.environ.get("MICROGRAD_CPP_BACKEND") == "pure":
            pytest.skip("MICROGRAD_CPP_BACKEND=pure: micrograd_cpp.nn runs on the oracle")
        pytest.fail("micrograd_cpp.nn is not running on the C++ engine: the extension did not load")
    return nn


def graph(root):
    """Every node under root as (op, data, grad, positions of its children), in a fixed order."""
    order, index, stack = [], {}, [root]
    while stack:
        v = stack.pop()
        if id(v) not in index:
            index[id(v)] = len(order)
            order.append(v)
            stack.extend(reversed(v._children))
    return [(v._op, v.data, v.grad, tuple(index[id(c)] for c in v._children)) for v in order]


def raised(call):
    """(type, message) of the exception call() raises, else None. No traceback outlives this
    call, so neither do the frames it ran through nor what they held."""
    try:
        call()
    except Exception as e:
        return type(e), str(e)
    return None


def state(values):
    """What a call that fails must leave as it was: each Value's data, grad and reference count,
    and the number of the C++ engine's live nodes (a node made from a Value raises that count,
    or the Value's own if the Value owns its node)."""
    return [(v.data, v.grad, sys.getrefcount(v)) for v in values], live_nodes()


def live_nodes():
    """The C++ engine's live nodes, or None without the extension."""
    try:
        from micrograd_cpp import _core
    except ImportError:
        return None
    return _core._pool_stats()["live_nodes"]


class Finalized:
    """Appends its tag to a list when it is freed: a witness that works without weak references."""

    def __init__(self, freed, tag):
        self.freed, self.tag = freed, tag

    def __del__(self):
        self.freed.append(self.tag)


def run_python(code):
    """Run code in a fresh interpreter and return its stdout. A crash or an error fails the
    calling test, with the exit status and stderr, instead of the run."""
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"exit status {result.returncode}\n{result.stderr}"
    return result.stdout


def run_isolated(code):
    """run_python(code)'s output, evaluated (a Python literal)."""
    return ast.literal_eval(run_python(code))


def run_with_memory_limit(setup, call, after, margin_mb):
    """run_isolated() of a program that runs setup, then the statement call with only margin_mb
    MiB of address space beyond what the process has mapped by then, then after with the limit
    lifted. after sees `limited`: the name of the exception the limited call raised, or None."""
    limit = f"""
        import resource

        def address_space():
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmSize:"):
                        return int(line.split()[1]) * 1024

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (address_space() + ({margin_mb} << 20), hard))
        try:
            {call}
            limited = None
        except MemoryError as e:
            limited = type(e).__name__
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    """
    return run_isolated("\n".join(textwrap.dedent(part) for part in (setup, limit, after)))


def under_sanitizer():
    """Whether AddressSanitizer's runtime is loaded (scripts/sanitize.sh): it reserves its
    shadow memory up front and does not survive an address-space limit."""
    try:
        ctypes.CDLL(None).__sanitizer_get_current_allocated_bytes  # noqa: B018
    except (AttributeError, OSError):
        return False
    return True
