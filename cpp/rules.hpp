// Every op's forward formula and local chain rule, side by side. Nodes built from Python and a
// compiled Program both use these, so both compute exactly micrograd's numbers: its formulas,
// in its order, with Python's float semantics (pymath.hpp).
#pragma once

#include "engine.hpp"

namespace mg {

// The value of `op` on operand values a and b (b unused by unary ops; e is a '**' exponent).
inline Status forward_value(Op op, double a, double b, double e, double* out) {
    switch (op) {
        case Op::add:
            *out = a + b;
            return Status::ok;
        case Op::mul:
            *out = a * b;
            return Status::ok;
        case Op::pow:
            return py_pow(a, e, out);
        case Op::relu:
            *out = a < 0 ? 0.0 : a;  // micrograd: 0 if x < 0 else x (so relu(-0.0) is -0.0)
            return Status::ok;
        case Op::tanh:
            *out = py_tanh(a);
            return Status::ok;
        case Op::exp:
            return py_exp(a, out);
        case Op::log:
            return py_log(a, out);
        case Op::leaf:
        case Op::custom:
            break;
    }
    return Status::ok;
}

// Adds a node's local chain rule to its operands' grads. The node has value `out` and grad g;
// its operands have values a and b. a_grad and b_grad may be the same variable (in a*a).
inline Status accumulate_gradient(Op op, double out, double g, double e, double a, double b,
                                  double* a_grad, double* b_grad) {
    switch (op) {
        case Op::add:  // self.grad += out.grad; other.grad += out.grad
            *a_grad += g;
            *b_grad += g;
            return Status::ok;
        case Op::mul:  // self.grad += other.data * out.grad; other.grad += self.data * out.grad
            *a_grad += b * g;
            *b_grad += a * g;
            return Status::ok;
        case Op::pow: {  // self.grad += (other * self.data**(other-1)) * out.grad
            double p;
            Status s = py_pow(a, e - 1, &p);
            if (s == Status::ok) *a_grad += (e * p) * g;
            return s;
        }
        case Op::relu:  // self.grad += (out.data > 0) * out.grad
            *a_grad += (out > 0 ? 1.0 : 0.0) * g;
            return Status::ok;
        case Op::tanh: {  // self.grad += (1 - t**2) * out.grad
            double t2;
            Status s = py_pow(out, 2.0, &t2);
            if (s == Status::ok) *a_grad += (1.0 - t2) * g;
            return s;
        }
        case Op::exp:  // self.grad += out.data * out.grad
            *a_grad += out * g;
            return Status::ok;
        case Op::log:  // self.grad += (1 / self.data) * out.grad
            if (a == 0.0) return Status::division_by_zero;
            *a_grad += (1.0 / a) * g;
            return Status::ok;
        case Op::leaf:
        case Op::custom:
            break;
    }
    return Status::ok;
}

inline bool is_binary(Op op) { return op == Op::add || op == Op::mul; }

}  // namespace mg
