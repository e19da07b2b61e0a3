"""The type stubs of the extension, _core.pyi, name every public name it has, and nothing else.

(mypy's stubtest checks the signatures; see the README.)
"""

import ast
import importlib.resources

import pytest

_core = pytest.importorskip("micrograd_cpp._core")

# Names a class has that the stubs leave out: class metadata, what `object` declares already, and
# pybind11's plumbing (a Program has no constructor: its __init__ only raises).
NOT_IN_STUBS = {"__dict__", "__doc__", "__module__", "__new__", "__setattr__", "__delattr__"}
NOT_IN_STUBS |= {"__repr__", "__init__", "_pybind11_conduit_v1_"}
KEPT = {"Value": {"__init__"}}  # Value's __init__ takes micrograd's arguments: the stubs say so


def stubs():
    """(module-level names, {class name: names in its body}) declared by _core.pyi."""
    source = importlib.resources.files("micrograd_cpp").joinpath("_core.pyi").read_text()
    module, classes = set(), {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            module.add(node.name)
            classes[node.name] = set(declared(node.body))
        else:
            module.update(declared([node]))
    return module, classes


def declared(body):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            yield node.name
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            yield node.target.id
        elif isinstance(node, ast.Assign):
            yield from (t.id for t in node.targets if isinstance(t, ast.Name))


def test_the_package_ships_the_stubs_and_the_typed_marker():
    package = importlib.resources.files("micrograd_cpp")
    assert package.joinpath("_core.pyi").is_file()
    assert package.joinpath("py.typed").is_file()


def test_every_public_name_of_the_module_is_in_the_stubs():
    module, _ = stubs()
    public = {name for name in dir(_core) if not name.startswith("__")}
    assert public - module == set(), "add these to _core.pyi"
    private = {name for name in module if name.startswith("_")}  # the stubs' own aliases
    assert module - private - public == set(), "_core has no such names"


def test_every_name_of_each_class_is_in_the_stubs():
    _, classes = stubs()
    runtime = {name for name in dir(_core) if isinstance(getattr(_core, name), type)}
    assert runtime == set(classes)
    for name in runtime:
        own = set(vars(getattr(_core, name))) - (NOT_IN_STUBS - KEPT.get(name, set()))
        assert own - classes[name] == set(), f"add these to {name} in _core.pyi"
        assert classes[name] - own == set(), f"{name} has no such attributes"
