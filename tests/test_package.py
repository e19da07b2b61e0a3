"""The package: backend selection, the fallback, install_as_micrograd, the version.

Backend selection happens at import, so each case runs in a fresh interpreter.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap

import pytest


def run_python(code, backend=None, *flags, cwd=None):
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
        cwd=cwd,
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


def test_empty_backend_variable_means_the_default():
    code = """
        import micrograd_cpp, micrograd_cpp._core
        assert micrograd_cpp.BACKEND == "cpp" and micrograd_cpp.Value is micrograd_cpp._core.Value
        print("ok")
    """
    assert run_python(code, "", "-W", "error") == "ok\n"


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


def copy_of_the_package(tmp_path, extension=None):
    """A copy of the installed package in tmp_path without its extension, or with extension's
    bytes as one (a corrupt file): imported from tmp_path, it shadows the installed one."""
    spec = importlib.util.find_spec("micrograd_cpp")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("micrograd_cpp is not installed")
    installed = spec.submodule_search_locations[0]
    cores = [name for name in os.listdir(installed) if name.startswith("_core.")]
    package = tmp_path / "micrograd_cpp"
    shutil.copytree(installed, package, ignore=shutil.ignore_patterns("_core.*", "__pycache__"))
    shutil.copy(os.path.join(installed, "_core.pyi"), package)
    if extension is not None:
        name = next(name for name in cores if name != "_core.pyi")
        (package / name).write_bytes(extension)
        return package / name
    return package


# the user's own script: the warning must point at its import line (3), not at the package
USER_SCRIPT = """\
import warnings
warnings.simplefilter("always")
import micrograd_cpp
assert micrograd_cpp.BACKEND == "pure", micrograd_cpp.BACKEND
"""


def fallback_warning(tmp_path):
    """The warning printed when tmp_path/user.py imports the package: (file:line, message)."""
    (tmp_path / "user.py").write_text(USER_SCRIPT)
    result = subprocess.run(
        [sys.executable, "user.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "MICROGRAD_CPP_BACKEND"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    where, _, message = first.partition(": RuntimeWarning: ")
    assert message, result.stderr
    return where, message


def test_fallback_warning_names_the_missing_extension(tmp_path):
    package = copy_of_the_package(tmp_path)
    where, message = fallback_warning(tmp_path)
    assert where == f"{tmp_path / 'user.py'}:3"
    assert message == (
        "micrograd-cpp is using its pure-Python engine: there is no C++ extension "
        f"(_core*.so or _core*.pyd) for this Python in {package}"
    )


def test_fallback_warning_names_a_corrupt_extension(tmp_path):
    extension = copy_of_the_package(tmp_path, extension=b"not a shared library")
    where, message = fallback_warning(tmp_path)
    assert where == f"{tmp_path / 'user.py'}:3"
    prefix = f"micrograd-cpp is using its pure-Python engine: the C++ extension {extension} "
    assert message.startswith(prefix + "failed to load (")
    assert "circular import" not in message and "__init__" not in message


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
    """It still installs, and warns that what was taken from upstream's keeps its classes."""
    pytest.importorskip("micrograd")
    code = """
        import warnings
        import micrograd.engine
        from micrograd.engine import Value
        import micrograd_cpp
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            micrograd_cpp.install_as_micrograd()
        (warning,) = caught
        assert warning.category is RuntimeWarning and warning.filename == "<string>"
        print(warning.lineno, warning.message)
        import micrograd.engine
        assert micrograd.engine.Value is micrograd_cpp.Value and Value is not micrograd_cpp.Value
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            micrograd_cpp.install_as_micrograd()  # micrograd is ours now: nothing to warn about
    """
    lineno, message = run_python(code, None, "-W", "error").split(" ", 1)
    assert lineno == "8"  # the call, in code (which starts with an empty line)
    assert message.startswith(
        "install_as_micrograd() came after `import micrograd` (micrograd, micrograd.engine "
        "already loaded): "
    )
    assert "call install_as_micrograd() first" in message


def test_version_is_the_distribution_version():
    try:
        expected = importlib.metadata.version("micrograd-cpp")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("micrograd-cpp is not installed")
    out = run_python("import micrograd_cpp; print(micrograd_cpp.__version__)", None, "-W", "error")
    assert out == f"{expected}\n"
