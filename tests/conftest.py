"""Fixtures shared by the tests: each engine test runs on the C++ backend and on the oracle."""

import gc
import importlib
import os
import warnings

import pytest
from helpers import MODULES
from hypothesis import settings

settings.register_profile("ci", max_examples=40, deadline=None)
settings.register_profile("thorough", max_examples=2000, deadline=None)
# Under AddressSanitizer every case is several times slower: fewer examples, the same tests.
settings.register_profile("sanitize", max_examples=10, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

BACKENDS = ("cpp", "pure")


def load_value(name):
    """The Value class of backend `name`; a missing C++ extension fails the cpp tests loudly.

    Importing either module imports the package, which warns when it falls back to the pure
    backend for want of the extension: the oracle must stay testable then.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return importlib.import_module(MODULES[name]).Value


@pytest.fixture(scope="session", params=BACKENDS)
def backend_name(request):
    return request.param


@pytest.fixture(scope="session")
def backend(backend_name):
    """The Value class under test."""
    return load_value(backend_name)


@pytest.fixture(scope="session")
def backends():
    """(C++ Value, oracle Value), for tests that compare the two bit for bit."""
    return load_value("cpp"), load_value("pure")


@pytest.fixture
def no_gc():
    """The collector off for the test: only gc.collect() collects, so what a cycle holds is
    freed there or never."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()
