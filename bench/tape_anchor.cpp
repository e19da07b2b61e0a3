// The tape anchor: W2's graph replayed by the plainest C++ one would write for it, a measure
// of what a scalar replay can cost on this machine. It reads a tape from stdin, one node a line
// in micrograd's topological order:
//
//     <count>
//     <op> <first operand> <second operand> <data, for a leaf; as C99 hex floats>
//
// with op one of leaf, add, mul, relu (operands are line numbers from 0; a leaf's are unused).
// Each round runs forward (every non-leaf node from its operands, its grad zeroed), sets the
// leaves' grads to zero, then backward (root grad 1, micrograd's rules in reverse order). It
// prints one JSON object: the median forward and backward times in ms over the rounds, the root's
// data and every leaf's grad (as hex floats) after the last round, to check against the engine.
//
// Build: c++ -O2 -std=c++17 -ffp-contract=off tape_anchor.cpp -o tape_anchor
// Run:   tape_anchor ROUNDS < tape.txt

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

enum Op : std::uint8_t { leaf, add, mul, relu };

struct Entry {
    Op op;
    std::uint32_t a, b;
};

double median_ms(std::vector<double> seconds) {
    std::sort(seconds.begin(), seconds.end());
    return seconds[seconds.size() / 2] * 1e3;
}

}  // namespace

int main(int argc, char** argv) {
    const int rounds = argc > 1 ? std::atoi(argv[1]) : 100;
    std::size_t count = 0;
    if (std::scanf("%zu", &count) != 1 || count == 0 || rounds < 1) {
        std::fprintf(stderr, "usage: tape_anchor ROUNDS < tape\n");
        return 2;
    }
    std::vector<Entry> tape(count);
    std::vector<double> data(count, 0.0), grad(count, 0.0);
    for (std::size_t i = 0; i < count; ++i) {
        char op[8], value[64];
        unsigned a, b;
        if (std::scanf("%7s %u %u %63s", op, &a, &b, value) != 4 || a >= count || b >= count) {
            std::fprintf(stderr, "bad tape line %zu\n", i + 1);
            return 2;
        }
        const std::string name = op;
        tape[i] = {name == "add" ? add : name == "mul" ? mul : name == "relu" ? relu : leaf, a, b};
        if (name != "leaf" && tape[i].op == leaf) {
            std::fprintf(stderr, "unknown op %s\n", op);
            return 2;
        }
        data[i] = std::strtod(value, nullptr);
    }

    using clock = std::chrono::steady_clock;
    std::vector<double> forward_s, backward_s;
    for (int r = 0; r < rounds; ++r) {
        const auto t0 = clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            const Entry& e = tape[i];
            switch (e.op) {
                case leaf: continue;
                case add: data[i] = data[e.a] + data[e.b]; break;
                case mul: data[i] = data[e.a] * data[e.b]; break;
                case relu: data[i] = data[e.a] < 0 ? 0.0 : data[e.a]; break;
            }
            grad[i] = 0.0;
        }
        const auto t1 = clock::now();
        for (std::size_t i = 0; i < count; ++i) {
            if (tape[i].op == leaf) grad[i] = 0.0;
        }
        const auto t2 = clock::now();
        grad[count - 1] = 1.0;
        for (std::size_t i = count; i-- > 0;) {
            const Entry& e = tape[i];
            switch (e.op) {
                case leaf: break;
                case add:
                    grad[e.a] += grad[i];
                    grad[e.b] += grad[i];
                    break;
                case mul:
                    grad[e.a] += data[e.b] * grad[i];
                    grad[e.b] += data[e.a] * grad[i];
                    break;
                case relu: grad[e.a] += (data[i] > 0 ? 1.0 : 0.0) * grad[i]; break;
            }
        }
        const auto t3 = clock::now();
        forward_s.push_back(std::chrono::duration<double>(t1 - t0).count());
        backward_s.push_back(std::chrono::duration<double>(t3 - t2).count());
    }

    std::printf("{\"forward_ms\": %.6f, \"backward_ms\": %.6f, \"root\": \"%a\", \"leaf_grads\": [",
                median_ms(forward_s), median_ms(backward_s), data[count - 1]);
    bool first = true;
    for (std::size_t i = 0; i < count; ++i) {
        if (tape[i].op != leaf) continue;
        std::printf("%s\"%a\"", first ? "" : ", ", grad[i]);
        first = false;
    }
    std::printf("]}\n");
    return 0;
}
