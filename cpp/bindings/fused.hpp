// sum, dot and neuron: loops of micrograd code done in one call from Python.
#pragma once

#include "value.hpp"

namespace mg::python {

// Adds the fused functions to the _core module; -1 with an exception set on failure.
int add_fused_functions(PyObject* module);

}  // namespace mg::python
