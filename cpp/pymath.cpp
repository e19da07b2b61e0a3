#include "pymath.hpp"

#include <cerrno>
#include <cmath>

namespace mg {
namespace {

bool is_odd_integer(double x) { return std::fmod(std::fabs(x), 2.0) == 1.0; }

// math_1 of Modules/mathmodule.c: map a libm result and errno to Python's verdict.
Status math_1_verdict(double x, double r, bool can_overflow) {
    if (std::isnan(r) && !std::isnan(x)) return Status::math_domain_error;
    if (std::isinf(r) && std::isfinite(x)) {
        return can_overflow ? Status::math_range_error : Status::math_domain_error;
    }
    if (std::isfinite(r) && errno != 0) {  // is_error(): underflow to a tiny result is fine
        if (errno == EDOM) return Status::math_domain_error;
        if (errno == ERANGE && std::fabs(r) >= 1.5) return Status::math_range_error;
    }
    return Status::ok;
}

// A negative base to a fractional power: Python computes a complex number (complex_pow, with
// _Py_c_pow's formula), which micrograd-cpp refuses. Python raises OverflowError first when
// that number overflows, so check for that the same way.
Status complex_verdict(double iv, double iw) {
    errno = 0;
    const double length = std::pow(-iv, iw);
    const double phase = std::atan2(0.0, iv) * iw;
    const double re = length * std::cos(phase);
    const double im = length * std::sin(phase);
    if (std::isinf(re) || std::isinf(im)) {  // _Py_ADJUST_ERANGE2
        if (errno == 0) errno = ERANGE;
    } else if (errno == ERANGE) {
        errno = 0;
    }
    return errno == ERANGE ? Status::complex_overflow : Status::complex_power;
}

}  // namespace

Status py_pow(double iv, double iw, double* out) {
    // Special cases first, in float_pow's order, instead of relying on pow().
    if (iw == 0) return *out = 1.0, Status::ok;  // v**0 is 1, even 0**0 and nan**0
    if (std::isnan(iv)) return *out = iv, Status::ok;
    if (std::isnan(iw)) return *out = (iv == 1.0 ? 1.0 : iw), Status::ok;
    if (std::isinf(iw)) {
        iv = std::fabs(iv);
        if (iv == 1.0) return *out = 1.0, Status::ok;
        *out = ((iw > 0.0) == (iv > 1.0)) ? std::fabs(iw) : 0.0;
        return Status::ok;
    }
    if (std::isinf(iv)) {
        bool odd = is_odd_integer(iw);
        if (iw > 0.0) return *out = odd ? iv : std::fabs(iv), Status::ok;
        return *out = odd ? std::copysign(0.0, iv) : 0.0, Status::ok;
    }
    if (iv == 0.0) {
        if (iw < 0.0) return Status::zero_to_negative_power;
        return *out = is_odd_integer(iw) ? iv : 0.0, Status::ok;
    }
    bool negate = false;
    if (iv < 0.0) {
        if (iw != std::floor(iw)) return complex_verdict(iv, iw);
        iv = -iv;
        negate = is_odd_integer(iw);
    }
    if (iv == 1.0) return *out = negate ? -1.0 : 1.0, Status::ok;
    // x**1 is x: libm's pow is exact when the result is representable, so skip the call.
    if (iw == 1.0) return *out = negate ? -iv : iv, Status::ok;

    errno = 0;
    double ix = std::pow(iv, iw);
    if (errno == 0) {  // _Py_ADJUST_ERANGE1
        if (std::isinf(ix)) errno = ERANGE;
    } else if (errno == ERANGE && ix == 0.0) {
        errno = 0;
    }
    if (negate) ix = -ix;
    if (errno != 0) return errno == ERANGE ? Status::pow_out_of_range : Status::pow_domain_error;
    *out = ix;
    return Status::ok;
}

Status py_exp(double x, double* out) {
    errno = 0;
    double r = std::exp(x);
    Status s = math_1_verdict(x, r, true);
    if (s == Status::ok) *out = r;
    return s;
}

double py_tanh(double x) { return std::tanh(x); }

Status py_log(double x, double* out) {
    // m_log: log of a finite x <= 0 is an error, log(nan) is nan, log(inf) is inf.
    double r;
    errno = 0;
    if (std::isfinite(x)) {
        if (x > 0.0) {
            r = std::log(x);
        } else {
            errno = EDOM;
            r = (x == 0.0) ? -HUGE_VAL : std::nan("");
        }
    } else if (std::isnan(x) || x > 0.0) {
        r = x;
    } else {
        errno = EDOM;
        r = std::nan("");
    }
    Status s = math_1_verdict(x, r, false);
    if (s == Status::ok) *out = r;
    return s;
}

}  // namespace mg
