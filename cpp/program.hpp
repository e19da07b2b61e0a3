// A graph frozen into a flat program that re-runs forward and backward without rebuilding it.
//
// A training loop builds the same graph every step; only the numbers change. A Program keeps the
// graph's topological order as compact arrays (op codes, operand indices, data, grad), so a
// replay is a pass over a few dense arrays instead of a walk over the node graph, with the very
// same operations as building and backpropagating the graph afresh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine.hpp"

namespace mg {

class Program {
  public:
    // Freezes the graph under root. Returns null, and the offending node in *refused, if the graph
    // holds a node whose forward the engine cannot recompute (a custom op made from Python).
    static Program* compile(Node* root, Node** refused);
    ~Program();
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    // Recomputes every non-leaf node from the leaves' current data, in topological order, and
    // stores the results in the nodes; their grads restart at zero, as in a rebuilt graph. On a
    // failure the nodes before the failing one hold their new values; *failed is its index.
    Status forward(std::size_t* failed);
    // root.backward() over the frozen order: the nodes' current grads, root grad 1, local rules
    // in reverse order on the values of the last forward (or of compile time). On a failure the
    // grads accumulated so far are stored, as root.backward() would leave them.
    Status backward(std::size_t* failed);
    // Sets every grad in the program, leaves included, to zero.
    void zero_grad();

    std::size_t size() const { return nodes_.size(); }
    Node* node(std::size_t i) const { return nodes_[i]; }
    Node* root() const { return nodes_.back(); }

  private:
    Program() = default;

    // One entry per node, in topological order (children first; the root last).
    std::vector<Node*> nodes_;  // each retained by the program
    std::vector<Op> ops_;
    std::vector<std::uint32_t> first_, second_;  // operand indices
    std::vector<double> exponent_;               // of '**' nodes
    std::vector<double> data_, grad_;
    std::vector<std::uint32_t> leaves_;
    std::uint64_t grads_read_at_ = 0;  // inner_grad_writes when grad_ last matched the nodes
};

}  // namespace mg
