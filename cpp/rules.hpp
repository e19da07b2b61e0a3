// Every op's facts in one table: its operand count, its label, whether a replay of it can fail,
// its forward formula and its local chain rule, side by side. Nodes built from Python and a
// compiled Program both use these, so both compute exactly micrograd's numbers: its formulas,
// in its order, with Python's float semantics (pymath.hpp).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "pymath.hpp"

namespace mg {

// Note [Op table]
// MG_OPS lists the ops; Rule<Op::name> below holds each one's facts. Everything that depends
// on the op reads them through this header: the enum, with_rule()'s switch (which the engine's
// rules, a Program's passes and its runs of one op go through), op_facts (operand counts for
// clone(), labels for _op, can_fail for a Program's schedule), and op_count, which sizes every
// per-op array. The pure-Python oracle mirrors the table in micrograd_cpp.pure.engine._OPS.
// Adding an op: a name here, its Rule, then the binding's method, the oracle's row, the stub
// and tests (README: "Adding an op").
#define MG_OPS(X) \
    X(leaf)       \
    X(add)        \
    X(mul)        \
    X(pow)        \
    X(relu)       \
    X(tanh)       \
    X(exp)        \
    X(log)        \
    X(custom)     \
    X(sigmoid)

enum class Op : std::uint8_t {
#define MG_OP_NAME(name) name,
    MG_OPS(MG_OP_NAME)
#undef MG_OP_NAME
};

// The number of ops: the size of every array indexed by an op.
#define MG_OP_ONE(name) +1
inline constexpr std::size_t op_count = 0 MG_OPS(MG_OP_ONE);
#undef MG_OP_ONE

constexpr int any_arity = -1;  // a custom node has one child or more

// What every row has unless it says otherwise: no formula, nothing to fail.
template <Op Self>
struct NoRule {
    static constexpr Op op = Self;
    // The op's value on operand values a and b (b unused by unary ops; e is a '**' exponent).
    static Status forward(double, double, double, double* out) {
        *out = 0.0;  // never read: a leaf's or a Python op's data is not computed here
        return Status::ok;
    }
    // Adds the local chain rule of a node with value `out` and grad g to its operands' grads;
    // the operands have values a and b. a_grad and b_grad may be the same variable (in a*a).
    static Status gradient(double, double, double, double, double, double*, double*) {
        return Status::ok;
    }
    // Whether replaying a node of this op that holds `out` can raise (Note [Failed passes]).
    static bool can_fail(double) { return false; }
    // Whether gradient() can fail at all (whatever g is, it fails on the same values).
    static constexpr bool gradient_can_fail = false;
};

template <Op>
struct Rule;

template <>
struct Rule<Op::leaf> : NoRule<Op::leaf> {
    static constexpr int arity = 0;
    static constexpr const char* label = "";
};

template <>
struct Rule<Op::custom> : NoRule<Op::custom> {  // made from Python: forward and rule are Python's
    static constexpr int arity = any_arity;
    static constexpr const char* label = "";  // the user's _op, kept by the binding
};

template <>
struct Rule<Op::add> : NoRule<Op::add> {
    static constexpr int arity = 2;
    static constexpr const char* label = "+";
    static Status forward(double a, double b, double, double* out) {
        *out = a + b;
        return Status::ok;
    }
    // self.grad += out.grad; other.grad += out.grad
    static Status gradient(double, double g, double, double, double, double* a_grad,
                           double* b_grad) {
        *a_grad += g;
        *b_grad += g;
        return Status::ok;
    }
};

template <>
struct Rule<Op::mul> : NoRule<Op::mul> {
    static constexpr int arity = 2;
    static constexpr const char* label = "*";
    static Status forward(double a, double b, double, double* out) {
        *out = a * b;
        return Status::ok;
    }
    // self.grad += other.data * out.grad; other.grad += self.data * out.grad
    static Status gradient(double, double g, double, double a, double b, double* a_grad,
                           double* b_grad) {
        *a_grad += b * g;
        *b_grad += a * g;
        return Status::ok;
    }
};

template <>
struct Rule<Op::pow> : NoRule<Op::pow> {
    static constexpr int arity = 1;
    static constexpr bool gradient_can_fail = true;
    static constexpr const char* label = nullptr;  // f'**{exponent}', made by the binding
    static Status forward(double a, double, double e, double* out) { return py_pow(a, e, out); }
    // self.grad += (other * self.data**(other-1)) * out.grad
    static Status gradient(double, double g, double e, double a, double, double* a_grad, double*) {
        double p;
        Status s = py_pow(a, e - 1, &p);
        if (s == Status::ok) *a_grad += (e * p) * g;
        return s;
    }
    static bool can_fail(double) { return true; }
};

template <>
struct Rule<Op::relu> : NoRule<Op::relu> {
    static constexpr int arity = 1;
    static constexpr const char* label = "ReLU";
    static Status forward(double a, double, double, double* out) {
        *out = a < 0 ? 0.0 : a;  // micrograd: 0 if x < 0 else x (so relu(-0.0) is -0.0)
        return Status::ok;
    }
    // self.grad += (out.data > 0) * out.grad
    static Status gradient(double out, double g, double, double, double, double* a_grad, double*) {
        *a_grad += (out > 0 ? 1.0 : 0.0) * g;
        return Status::ok;
    }
};

template <>
struct Rule<Op::tanh> : NoRule<Op::tanh> {
    static constexpr int arity = 1;
    static constexpr bool gradient_can_fail = true;
    static constexpr const char* label = "tanh";
    static Status forward(double a, double, double, double* out) {
        *out = py_tanh(a);
        return Status::ok;
    }
    // self.grad += (1 - t**2) * out.grad
    static Status gradient(double out, double g, double, double, double, double* a_grad, double*) {
        double t2;
        Status s = py_pow(out, 2.0, &t2);
        if (s == Status::ok) *a_grad += (1.0 - t2) * g;
        return s;
    }
    // The forward cannot fail, but t**2 overflows for |t| > ~1.3e154: never a value tanh
    // computes, but one a node can hold when compiled (set by hand), replayed until a forward.
    static bool can_fail(double out) {
        double square;
        return py_pow(out, 2.0, &square) != Status::ok;
    }
};

template <>
struct Rule<Op::exp> : NoRule<Op::exp> {
    static constexpr int arity = 1;
    static constexpr const char* label = "exp";
    static Status forward(double a, double, double, double* out) { return py_exp(a, out); }
    // self.grad += out.data * out.grad
    static Status gradient(double out, double g, double, double, double, double* a_grad, double*) {
        *a_grad += out * g;
        return Status::ok;
    }
    static bool can_fail(double) { return true; }
};

template <>
struct Rule<Op::log> : NoRule<Op::log> {
    static constexpr int arity = 1;
    static constexpr bool gradient_can_fail = true;
    static constexpr const char* label = "log";
    static Status forward(double a, double, double, double* out) { return py_log(a, out); }
    // self.grad += (1 / self.data) * out.grad
    static Status gradient(double, double g, double, double a, double, double* a_grad, double*) {
        if (a == 0.0) return Status::division_by_zero;
        *a_grad += (1.0 / a) * g;
        return Status::ok;
    }
    static bool can_fail(double) { return true; }
};

template <>
struct Rule<Op::sigmoid> : NoRule<Op::sigmoid> {
    static constexpr int arity = 1;
    static constexpr const char* label = "sigmoid";
    // 1 / (1 + exp(-x)) for x >= 0, exp(x) / (1 + exp(x)) below: exp only ever sees x <= 0,
    // so it never overflows and sigmoid never raises (sigmoid(-1000) is 0.0, sigmoid(1000)
    // 1.0, sigmoid(nan) nan). The oracle computes the same operations on the same doubles.
    static Status forward(double a, double, double, double* out) {
        if (a >= 0) {
            *out = 1.0 / (1.0 + std::exp(-a));
        } else {
            const double e = std::exp(a);
            *out = e / (1.0 + e);
        }
        return Status::ok;
    }
    // self.grad += out.data * (1 - out.data) * out.grad
    static Status gradient(double out, double g, double, double, double, double* a_grad, double*) {
        *a_grad += out * (1.0 - out) * g;
        return Status::ok;
    }
};

// f(Rule<op>{}): the one switch over the ops, which the compiler turns into a jump table.
template <class F>
inline decltype(auto) with_rule(Op op, F&& f) {
    switch (op) {
#define MG_OP_CASE(name) \
    case Op::name:       \
        return f(Rule<Op::name>{});
        MG_OPS(MG_OP_CASE)
#undef MG_OP_CASE
    }
    return f(Rule<Op::leaf>{});  // not reached: every op has its case
}

// The facts that need no formula, in an array indexed by op.
struct OpFacts {
    int arity;                     // operand count, or any_arity
    const char* label;             // the _op a node of this op shows; null for '**'
    bool (*can_fail)(double out);  // Rule<op>::can_fail
    bool gradient_can_fail;        // Rule<op>::gradient_can_fail
};
inline constexpr OpFacts op_facts[op_count] = {
#define MG_OP_FACTS(name)                                                    \
    {Rule<Op::name>::arity, Rule<Op::name>::label, Rule<Op::name>::can_fail, \
     Rule<Op::name>::gradient_can_fail},
    MG_OPS(MG_OP_FACTS)
#undef MG_OP_FACTS
};
inline const OpFacts& facts(Op op) { return op_facts[static_cast<std::size_t>(op)]; }

// The binary ops as bits of one constant, so that backward's walk tests an op without a load.
#define MG_OP_BINARY_BIT(name) \
    | (Rule<Op::name>::arity == 2 ? std::uint32_t{1} << static_cast<unsigned>(Op::name) : 0u)
inline constexpr std::uint32_t binary_ops = 0u MG_OPS(MG_OP_BINARY_BIT);
#undef MG_OP_BINARY_BIT
static_assert(op_count <= 32, "binary_ops has a bit per op");
inline bool is_binary(Op op) { return (binary_ops >> static_cast<unsigned>(op)) & 1u; }
// Whether nodes of this op have a built-in forward and rule (not a leaf, not a Python op).
inline bool is_builtin(Op op) { return op != Op::leaf && op != Op::custom; }

inline Status forward_value(Op op, double a, double b, double e, double* out) {
    return with_rule(op, [&](auto rule) { return decltype(rule)::forward(a, b, e, out); });
}

inline Status accumulate_gradient(Op op, double out, double g, double e, double a, double b,
                                  double* a_grad, double* b_grad) {
    return with_rule(
        op, [&](auto rule) { return decltype(rule)::gradient(out, g, e, a, b, a_grad, b_grad); });
}

}  // namespace mg
