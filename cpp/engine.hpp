// micrograd-cpp's engine: scalar autograd nodes, their forward and local gradient rules, the
// topological order and the backward pass. No Python here; the binding layer attaches Python
// objects to nodes through the opaque `handle` and the hooks below.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "rules.hpp"

namespace mg {

enum NodeFlags : std::uint8_t {
    has_python_backward = 1,  // the user assigned _backward: backward() calls the hook
    exponent_is_int = 2,      // the '**' label prints the exponent as an integer
    has_had_children = 4,     // once an inner node, so a replay may keep its grad
    has_custom_entry = 8,     // the binding keeps a user's _op or _backward for its object
    // Its object, or one below it, may refer outside the graph (Note [Cycle collection] in the
    // binding); set by the binding, passed from operands to each node made over them.
    may_reach_outside = 16,
    has_had_parents = 32,   // once an operand: nodes above it may exist
    spread_visited = 64,    // seen by the running spread_reach_outside()
    owned_by_object = 128,  // the node's object owns it: Note [Ownership]
};

// Note [Ownership]
// A node is owned by its parents, by user-facing arrays (a Program's) and by its Python object,
// if it has one (`handle`), in one of two ways:
// - The object shares the node: it is one more owner, counted in `refs` like the others, and
//   the node forgets it when it goes. So an op's result (`r` in `r = r * x + b`) costs its
//   object only while Python holds it, and its node lives on in the graph. Such an object
//   carries nothing but its node: no attribute, no custom _op or _backward, no subclass, no
//   weak references; if Python reaches the node again, it gets a new object.
// - The object owns the node (`owned_by_object`): the node keeps it for life, its only
//   reference is the object's, and every other owner holds a Python reference to the object
//   instead. An object turns to this for good once it has anything of its own (an attribute
//   set, a custom _op or _backward, a subclass), once the cycle collector tracks it (Note
//   [Cycle collection] in the binding: every reference between tracked objects is then a Python
//   one), and once Python code finds it through the graph (_prev, _children,
//   topological_order): what was found keeps its identity for as long as the graph lives.
// retain() and release() pick the right counter.
struct Node {
    double data;
    double grad;
    union {
        Node* pair[2];  // up to two children: the operands of a built-in op
        struct {
            Node* base;
            double exponent;
        } pow;
        Node** list;  // more than two children (a custom node made from Python)
    } operands;
    void* handle;        // the node's Python object, if any
    std::uint64_t mark;  // the traversal that last visited this node
    std::uint32_t refs;
    std::uint32_t count;  // number of children
    Op op;
    std::uint8_t flags;
    std::uint32_t made;  // nodes_made when this one was made: Note [Creation order]
};

static_assert(sizeof(Node) <= 64, "a node must fit in a cache line");

inline std::uint32_t child_count(const Node* n) { return n->count; }
inline Node* const* children(const Node* n) {
    return n->count <= 2 ? n->operands.pair : n->operands.list;
}

// Note [Creation order]
// Every node is made after its operands, so the order the nodes were made in is a topological
// order, the one Python code that builds the graph afresh evaluates it in. A replay's forward
// follows it (Note [Failed passes] in program.hpp), so that a replay fails at the node a
// rebuild fails at, with the same exception. `made` counts modulo 2**32: within one graph, the
// age of a node is its root's stamp minus its own, exact while the graph was made within 2**32
// node creations (a Program checks that the order it gets is topological, and keeps its own if
// not).
extern std::uint32_t nodes_made;

// Note [Counts in place]
// A step of a training loop retains and releases the model's parameters' objects once per edge
// (W2: ~34,000 times each way), so a call through a hook for each was ~6% of the step. Where the
// binding knows that a handle begins with its reference count, a plain std::intptr_t that it
// may change directly (CPython's objects, but for the free-threaded build's and debug builds'),
// it sets counts_in_place: then retain() adds one in place, and a release that leaves owners
// takes one away in place; only the last one calls release_handle, which frees the object.
//
// Set once by the binding. The engine calls them only for nodes owned by their object.
struct Hooks {
    void (*retain_handle)(void* handle) = nullptr;
    void (*release_handle)(void* handle) = nullptr;
    Status (*run_python_backward)(Node* node) = nullptr;
    bool counts_in_place = false;  // Note [Counts in place]
};
extern Hooks hooks;

inline void retain_handle(void* handle) {
    if (hooks.counts_in_place) {
        ++*static_cast<std::intptr_t*>(handle);
    } else {
        hooks.retain_handle(handle);
    }
}
// Takes one reference off in place if that leaves the object others (Note [Counts in place]);
// false, having changed nothing, if the release must go through the binding.
inline bool release_handle_in_place(void* handle) {
    if (!hooks.counts_in_place) return false;
    auto* count = static_cast<std::intptr_t*>(handle);
    if (*count <= 1) return false;
    --*count;
    return true;
}
inline void release_handle(void* handle) {
    if (!release_handle_in_place(handle)) hooks.release_handle(handle);
}

inline void retain(Node* n) {
    if (n->flags & owned_by_object) {
        retain_handle(n->handle);
    } else {
        ++n->refs;
    }
}
// Drops one reference; frees what nobody owns any more, without recursion.
void release(Node* n);

// Constructors return a node with one reference owned by the caller, or null with *status set
// (then nothing was created and nothing changed). Operands are retained by the new node.
Node* new_leaf(double data);
Node* add(Node* a, Node* b);
Node* mul(Node* a, Node* b);
Node* add_constant(Node* a, double c);  // a + Value(c)
Node* mul_constant(Node* a, double c);  // a * Value(c)
// The same, taking over the caller's references to the operands instead of retaining them.
Node* add_taking(Node* a, Node* b);
Node* mul_taking(Node* a, Node* b);
Node* relu_taking(Node* a);
Node* pow(Node* a, double exponent, Status* status);
Node* relu(Node* a);
Node* tanh(Node* a);
Node* exp(Node* a, Status* status);
Node* log(Node* a, Status* status);
// Any built-in unary op but '**' (Note [Op table]): the binding's methods use this one.
Node* unary_node(Op op, Node* a, Status* status);

// Makes n a custom node with these children (a leaf if there are none), as Value(data, children,
// op) does. A node that may already have parents is checked first: if it would become its own
// descendant, nothing changes and the result is false.
bool set_children(Node* n, Node* const* kids, std::size_t count, bool may_have_parents);

// A new node with n's op, data, grad and exponent over the given children; null if their
// number does not fit the op.
Node* clone(const Node* n, Node* const* kids, std::size_t count);

// Marks may_reach_outside on every live node that has a marked node below it, and passes each
// node it newly marks to `newly_marked`, which must not touch the graph. For a node marked after
// it got parents. Can throw std::bad_alloc, having marked some of them.
void spread_reach_outside(void (*newly_marked)(Node*));

// Nodes under root, every child before its parents: micrograd's build_topo, iterative, visiting
// children in operand order. The pure-Python oracle implements the very same order.
void topological_order(Node* root, std::vector<Node*>& order);

// This node's local chain rule: micrograd's formula, in micrograd's order. The builtin variant
// ignores a Python _backward the user may have assigned.
Status apply_local_rule(Node* n);
Status apply_builtin_rule(Node* n);

// micrograd's backward(): root grad set to 1, local rules in reverse topological order,
// accumulating. Stops at the first rule that fails and returns its status.
Status backward(Node* root);

}  // namespace mg
