"""The package: backend selection, the fallback, install_as_micrograd, the version.

Backend selection happens at import, so each case runs in a fresh interpreter.
"""

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest


def run_python(code, backend=None, *flags):
    """Run code in a fresh interpreter with MICROGRAD_CPP_BACKEND set to backend (or unset)."""
    env = {k: v for k, v in os.environ.items() if k != "MICROGRAD_CPP_BACKEND"}
    if backend is not None:
        env["MICROGRAD_CPP_BACKEND"] = backend
    result = subprocess.run(
        [sys.executable, *flags, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_default_backend_is_the_extension():
    code = """
        import micrograd_cpp, micrograd_cpp.engine, micrograd_cpp._core
        assert micrograd_cpp.engine.Value is micrograd_cpp._core.Value
        assert micrograd_cpp.Value is micrograd_cpp._core.Value
        print("ok")
    """
    assert run_python(code, None, "-W", "error") == "ok\n"


def test_pure_backend_on_request():
    code = """
        import micrograd_cpp, micrograd_cpp.engine, micrograd_cpp.pure.engine
        assert micrograd_cpp.engine.Value is micrograd_cpp.pure.engine.Value
        assert micrograd_cpp.Value is micrograd_cpp.pure.engine.Value
        print("ok")
    """
    assert run_python(code, "pure", "-W", "error") == "ok\n"


FALLBACK = """
    import sys, warnings
    {break_extension}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import micrograd_cpp, micrograd_cpp.engine, micrograd_cpp.pure.engine
    assert micrograd_cpp.engine.Value is micrograd_cpp.pure.engine.Value
    assert micrograd_cpp.Value is micrograd_cpp.pure.engine.Value
    try:
        import micrograd_cpp._core
    except ImportError as error:
        reason = str(error)
    else:
        raise AssertionError("the extension imported")
    assert [w.category for w in caught] == [RuntimeWarning], caught
    message = str(caught[0].message)
    assert reason in message, (reason, message)
    print("ok")
"""


def test_fallback_when_the_extension_is_missing():
    code = FALLBACK.format(break_extension="sys.modules['micrograd_cpp._core'] = None")
    assert run_python(code) == "ok\n"


def test_fallback_warning_says_why_loading_failed():
    broken = """
        class Broken:
            def find_spec(self, name, path=None, target=None):
                if name == "micrograd_cpp._core":
                    raise ImportError("simulated: undefined symbol _ZN4core4nodeE")
        sys.meta_path.insert(0, Broken())
    """
    code = FALLBACK.format(break_extension=textwrap.indent(textwrap.dedent(broken), "    ").strip())
    assert run_python(code) == "ok\n"


INSTALL = """
    import sys, importlib.util
    {before}
    import micrograd_cpp, micrograd_cpp.engine
    micrograd_cpp.install_as_micrograd()
    import micrograd, micrograd.engine
    from micrograd.engine import Value
    assert Value is micrograd_cpp.Value is micrograd_cpp.engine.Value
    assert micrograd.engine is micrograd_cpp.engine
    if importlib.util.find_spec("micrograd_cpp.nn") is not None:
        import micrograd_cpp.nn
        from micrograd import nn
        import micrograd.nn
        assert nn is micrograd.nn is micrograd_cpp.nn
    a, b = Value(-4.0), Value(2.0)  # micrograd's README example
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    g.backward()
    print(f"{{g.data:.4f}} {{a.grad:.4f}} {{b.grad:.4f}}")
"""


README_NUMBERS = "24.7041 138.8338 645.5773\n"


@pytest.mark.parametrize("backend", [None, "pure"])
def test_install_as_micrograd(backend):
    assert run_python(INSTALL.format(before=""), backend, "-W", "error") == README_NUMBERS


def test_install_as_micrograd_replaces_an_imported_micrograd():
    pytest.importorskip("micrograd")
    before = "import micrograd.engine"
    assert run_python(INSTALL.format(before=before), None, "-W", "error") == README_NUMBERS


def test_version_is_the_distribution_version():
    try:
        expected = importlib.metadata.version("micrograd-cpp")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("micrograd-cpp is not installed")
    out = run_python("import micrograd_cpp; print(micrograd_cpp.__version__)", None, "-W", "error")
    assert out == f"{expected}\n"
