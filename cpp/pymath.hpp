// Python's float arithmetic, reproduced bit for bit for the operations micrograd uses.
//
// CPython does not hand pow, exp and log straight to libm: it sorts out special cases first and
// turns errno into exceptions. These functions follow Objects/floatobject.c (float_pow) and
// Modules/mathmodule.c (math_1, m_log) so that the engine computes exactly what a Python
// expression would, and fails exactly where it would.
#pragma once

#include <cstdint>

namespace mg {

// Every way an operation can fail; the binding raises the matching Python exception.
enum class Status : std::uint8_t {
    ok,
    zero_to_negative_power,  // ZeroDivisionError: 0.0 cannot be raised to a negative power
    pow_out_of_range,        // OverflowError: [Errno 34] Numerical result out of range
    pow_domain_error,        // ValueError: [Errno 33] Numerical argument out of domain
    complex_power,           // ValueError where Python would return a complex number
    complex_overflow,        // OverflowError: complex exponentiation
    math_range_error,        // OverflowError: math range error
    math_domain_error,       // ValueError: math domain error
    division_by_zero,        // ZeroDivisionError: float division by zero
    callback_failed,         // a user's Python _backward raised; its exception is already set
};

// x ** e for floats (float_pow).
Status py_pow(double x, double e, double* out);
// math.exp(x), math.tanh(x), math.log(x).
Status py_exp(double x, double* out);
double py_tanh(double x);
Status py_log(double x, double* out);

}  // namespace mg
