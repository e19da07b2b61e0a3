// Every engine Status as the exception Python's own float arithmetic raises.
#include <cerrno>

#include "value.hpp"

namespace mg::python {

PyObject* set_error(Status status) {
    switch (status) {
        case Status::ok:
        case Status::callback_failed:
            break;
        case Status::zero_to_negative_power:
            PyErr_SetString(PyExc_ZeroDivisionError, "0.0 cannot be raised to a negative power");
            break;
        case Status::pow_out_of_range:
            errno = ERANGE;
            PyErr_SetFromErrno(PyExc_OverflowError);
            break;
        case Status::pow_domain_error:
            errno = EDOM;
            PyErr_SetFromErrno(PyExc_ValueError);
            break;
        case Status::complex_power:
            PyErr_SetString(PyExc_ValueError,
                            "negative number cannot be raised to a fractional power");
            break;
        case Status::complex_overflow:
            PyErr_SetString(PyExc_OverflowError, "complex exponentiation");
            break;
        case Status::math_range_error:
            PyErr_SetString(PyExc_OverflowError, "math range error");
            break;
        case Status::math_domain_error:
            PyErr_SetString(PyExc_ValueError, "math domain error");
            break;
        case Status::division_by_zero:
            PyErr_SetString(PyExc_ZeroDivisionError, "float division by zero");
            break;
    }
    return nullptr;
}

}  // namespace mg::python
