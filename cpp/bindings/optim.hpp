// sgd_step and adamw_step for micrograd_cpp.optim.
#pragma once

#include "value.hpp"

namespace mg::python {

// Adds the optimizer steps to the _core module; -1 with an exception set on failure.
int add_optimizer_functions(PyObject* module);

}  // namespace mg::python
