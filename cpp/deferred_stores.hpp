// The bookkeeping of a replay's deferred stores: which program still holds results the nodes do
// not, and the counters that tell a program when the nodes changed behind its back. The replay
// (program.cpp) owns it; the engine and the binding only call the hooks below, and each caller
// cites Note [Deferred stores].
#pragma once

#include <cstdint>

#include "engine.hpp"

namespace mg {

// Note [Deferred stores]
// A Program's replay stores its results at once only in the nodes that have a Python object, the
// ones a user can read; the others (most of a network: the fused layers make them) keep theirs
// in the program's arrays. At most one program is unsettled like this. The hooks:
// - settle(): anything else that reads or writes nodes by walking the graph calls it first, and
//   it stores them (the engine: topological_order, backward, the local rules).
// - expose(): the binding calls it before it gives a node a Python object, so that programs
//   store that node at once from then on.
// - grad_written(n), grads_written(): whatever writes the grad of a node that may have had
//   children, other than a Program (backward, a local rule, a user's assignment, zero_grads,
//   re-initialising a node), says so, so that programs re-read the grads they keep.
class DeferredStores {
  public:
    // Stores the deferred results in the nodes; then nothing is unsettled.
    virtual void settle() = 0;

  protected:
    ~DeferredStores() = default;
};

// The replay whose results some nodes do not hold yet, if any.
extern DeferredStores* unsettled;
inline void settle() {
    if (unsettled) unsettled->settle();
}

// Counts the nodes given a Python object after they were made.
extern std::uint64_t exposures;
inline void expose() {
    settle();
    ++exposures;
}

// Counts the times anything but a Program may have written the grad of a non-leaf node.
extern std::uint64_t inner_grad_writes;
// Grads of any nodes were written (a backward pass, a local rule).
inline void grads_written() { ++inner_grad_writes; }
// n's grad was written; it matters only if n is, or was, an inner node.
inline void grad_written(const Node* n) {
    if (n->flags & has_had_children) ++inner_grad_writes;
}

}  // namespace mg
