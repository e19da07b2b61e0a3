// micrograd_cpp._core.compile and the Program type.
#pragma once

#include <pybind11/pybind11.h>

namespace mg::python {

void bind_program(pybind11::module_& m);

}  // namespace mg::python
