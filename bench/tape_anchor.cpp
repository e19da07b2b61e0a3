// The tape anchor: a graph run by the plainest C++ one would write for it, a measure of what a
// scalar engine can cost on this machine. It reads a tape from stdin, one node a line in
// micrograd's topological order:
//
//     <count>
//     <op> <first operand> <second operand> <value, as a C99 hex float>
//
// with op one of leaf, add, mul, pow, relu, tanh; operands are line numbers from 0 (unused ones
// are ignored); the value is a leaf's data or a pow's exponent (ignored for other ops). Every
// formula is micrograd's, in its order (pow's gradient is e * a**(e-1) * g, tanh's (1 - t**2) * g).
//
// Two modes, each run for ROUNDS rounds:
// - replay: the graph built once; a round runs forward (every non-leaf node from its operands,
//   its grad zeroed), zeroes the leaves' grads, then backward (root grad 1, the rules in reverse
//   order). Prints the median forward_ms and backward_ms.
// - record: a round records the graph afresh, as a Python rebuild does: the tape cleared (its
//   memory kept, as a tape library keeps it), every node appended with its data computed and
//   its grad 0, then backward. Prints the median record_ms, backward_ms and step_ms (both).
// Both print the root's data and every leaf's grad (hex floats) after the last round, to check
// against the engine, in one JSON object.
//
// Build: c++ -O2 -std=c++17 -ffp-contract=off tape_anchor.cpp -o tape_anchor
// Run:   tape_anchor replay|record ROUNDS < tape.txt

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

enum Op : std::uint8_t { leaf, add, mul, pow, relu, tanh, unknown };

struct Entry {
    Op op;
    std::uint32_t a, b;
};

struct Tape {
    std::vector<Entry> entries;
    std::vector<double> value;  // a leaf's data, a pow's exponent
};

Op op_named(const std::string& name) {
    const char* names[] = {"leaf", "add", "mul", "pow", "relu", "tanh"};
    for (int op = leaf; op < unknown; ++op) {
        if (name == names[op]) return static_cast<Op>(op);
    }
    return unknown;
}

// Node i's data from its operands' (a leaf's is its value).
inline double forward(const Tape& tape, std::size_t i, const double* data) {
    const Entry& e = tape.entries[i];
    switch (e.op) {
        case add:
            return data[e.a] + data[e.b];
        case mul:
            return data[e.a] * data[e.b];
        case pow:
            return std::pow(data[e.a], tape.value[i]);
        case relu:
            return data[e.a] < 0 ? 0.0 : data[e.a];
        case tanh:
            return std::tanh(data[e.a]);
        default:
            return tape.value[i];
    }
}

// Root grad 1, then each node's rule, in reverse order: its grad added to its operands'. Each
// case reads only what its op needs (value only for pow), as a tape of fewer ops would.
void backward_pass(const Tape& tape, const double* data, double* grad) {
    const std::size_t count = tape.entries.size();
    grad[count - 1] = 1.0;
    for (std::size_t i = count; i-- > 0;) {
        const Entry& e = tape.entries[i];
        switch (e.op) {
            case add:
                grad[e.a] += grad[i];
                grad[e.b] += grad[i];
                break;
            case mul:
                grad[e.a] += data[e.b] * grad[i];
                grad[e.b] += data[e.a] * grad[i];
                break;
            case pow: {
                const double exponent = tape.value[i];
                grad[e.a] += (exponent * std::pow(data[e.a], exponent - 1)) * grad[i];
                break;
            }
            case relu:
                grad[e.a] += (data[i] > 0 ? 1.0 : 0.0) * grad[i];
                break;
            case tanh:
                grad[e.a] += (1.0 - std::pow(data[i], 2.0)) * grad[i];
                break;
            default:
                break;
        }
    }
}

double median_ms(std::vector<double> seconds) {
    std::sort(seconds.begin(), seconds.end());
    return seconds[seconds.size() / 2] * 1e3;
}

void print_result(const Tape& tape, const std::vector<double>& data,
                  const std::vector<double>& grad) {
    std::printf("\"root\": \"%a\", \"leaf_grads\": [", data.back());
    bool first = true;
    for (std::size_t i = 0; i < tape.entries.size(); ++i) {
        if (tape.entries[i].op != leaf) continue;
        std::printf("%s\"%a\"", first ? "" : ", ", grad[i]);
        first = false;
    }
    std::printf("]}\n");
}

using Clock = std::chrono::steady_clock;

double seconds(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
}

void replay(const Tape& tape, int rounds) {
    const std::size_t count = tape.entries.size();
    std::vector<double> data(tape.value), grad(count, 0.0);
    std::vector<double> forward_s, backward_s;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = Clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            const Entry& e = tape.entries[i];
            if (e.op == leaf) continue;
            data[i] = forward(tape, i, data.data());
            grad[i] = 0.0;
        }
        const auto t1 = Clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            if (tape.entries[i].op == leaf) grad[i] = 0.0;
        }
        const auto t2 = Clock::now();
        backward_pass(tape, data.data(), grad.data());
        const auto t3 = Clock::now();
        forward_s.push_back(seconds(t0, t1));
        backward_s.push_back(seconds(t2, t3));
    }
    std::printf("{\"forward_ms\": %.6f, \"backward_ms\": %.6f, ", median_ms(forward_s),
                median_ms(backward_s));
    print_result(tape, data, grad);
}

void record(const Tape& tape, int rounds) {
    const std::size_t count = tape.entries.size();
    std::vector<double> record_s, backward_s, step_s;
    // One tape for the whole run, as a C++ tape library keeps it: each round clears it (its
    // memory kept) and records the graph again.
    Tape recorded;
    std::vector<double> data, grad;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = Clock::now();
        recorded.entries.clear();
        recorded.value.clear();
        data.clear();
        grad.clear();
        for (std::size_t i = 0; i < count; ++i) {
            const Entry& e = tape.entries[i];
            recorded.entries.push_back(e);
            recorded.value.push_back(tape.value[i]);
            data.push_back(forward(tape, i, data.data()));
            grad.push_back(0.0);
        }
        const auto t1 = Clock::now();
        backward_pass(recorded, data.data(), grad.data());
        const auto t2 = Clock::now();
        record_s.push_back(seconds(t0, t1));
        backward_s.push_back(seconds(t1, t2));
        step_s.push_back(seconds(t0, t2));
    }
    std::printf("{\"record_ms\": %.6f, \"backward_ms\": %.6f, \"step_ms\": %.6f, ",
                median_ms(record_s), median_ms(backward_s), median_ms(step_s));
    print_result(tape, data, grad);
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    const int rounds = argc > 2 ? std::atoi(argv[2]) : 0;
    std::size_t count = 0;
    if ((mode != "replay" && mode != "record") || rounds < 1 || std::scanf("%zu", &count) != 1 ||
        count == 0) {
        std::fprintf(stderr, "usage: tape_anchor replay|record ROUNDS < tape\n");
        return 2;
    }
    Tape tape;
    tape.entries.resize(count);
    tape.value.resize(count);
    for (std::size_t i = 0; i < count; ++i) {
        char op[8], value[64];
        unsigned a, b;
        if (std::scanf("%7s %u %u %63s", op, &a, &b, value) != 4 || a >= count || b >= count) {
            std::fprintf(stderr, "bad tape line %zu\n", i + 1);
            return 2;
        }
        tape.entries[i] = {op_named(op), a, b};
        if (tape.entries[i].op == unknown) {
            std::fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
        if (tape.entries[i].op != leaf && (a >= i || b >= i)) {
            std::fprintf(stderr, "line %zu: an operand after its node\n", i + 1);
            return 2;
        }
        tape.value[i] = std::strtod(value, nullptr);
    }
    (mode == "replay" ? replay : record)(tape, rounds);
    return 0;
}
