#include "engine.hpp"

#include <cstring>
#include <memory>

#include "deferred_stores.hpp"
#include "node_pool.hpp"
#include "rules.hpp"

namespace mg {

Hooks hooks;
std::uint32_t nodes_made = 0;

static void assign_children(Node* n, Node* const* kids, std::size_t count);

namespace {

Node* make(Op op, double data, std::uint32_t count) {
    Node* n = allocate_node();
    n->data = data;
    n->grad = 0.0;
    n->operands.pair[0] = n->operands.pair[1] = nullptr;
    n->handle = nullptr;
    n->mark = 0;
    n->refs = 1;
    n->op = op;
    n->count = count;
    n->flags = count ? has_had_children : 0;
    n->made = ++nodes_made;  // wraps around: Note [Creation order]
    return n;
}

// Note [Cycle collection] in the binding: the mark passes up to the new node, and the operand
// learns it has a parent. Written only on change, as most operands have had parents before.
inline void mark_as_operand(Node* n, Node* operand) {
    const std::uint8_t flags = operand->flags;
    n->flags |= flags & may_reach_outside;
    if (!(flags & has_had_parents)) operand->flags = flags | has_had_parents;
}

// The new node takes over one reference to each operand: callers retain() what they borrow.
// If there is no memory for it, the references go back before std::bad_alloc goes on, so a
// failed op leaves no operand owned by nobody (the binding turns the exception into
// MemoryError).
Node* unary(Op op, Node* a, double data) {
    Node* n;
    try {
        n = make(op, data, 1);
    } catch (...) {
        release(a);
        throw;
    }
    n->operands.pair[0] = a;
    mark_as_operand(n, a);
    return n;
}

Node* binary(Op op, Node* a, Node* b, double data) {
    Node* n;
    try {
        n = make(op, data, 2);
    } catch (...) {
        release(a);
        release(b);
        throw;
    }
    n->operands.pair[0] = a;
    n->operands.pair[1] = b;
    mark_as_operand(n, a);
    mark_as_operand(n, b);
    return n;
}

Node* retained(Node* n) {
    retain(n);
    return n;
}

// Note [Iterative teardown]
// Freeing a node releases its children, which may free them, and so on down a chain a million
// nodes long: done recursively, that overflows the stack. Instead, nodes whose last reference
// went away are pushed on `dying` and freed by one loop. A release that happens while the loop
// runs (also one that comes back through a Python object's deallocation) only pushes. `dying`
// is a stack linked through the dead nodes themselves (their `mark`, which no traversal reads
// again), so teardown never allocates: it cannot fail when memory runs out, nor leave
// `draining` set so that nothing would be freed any more.
Node* dying = nullptr;
bool draining = false;

void push_dying(Node* n) noexcept {
    n->mark = reinterpret_cast<std::uintptr_t>(dying);
    dying = n;
}

Node* pop_dying() noexcept {
    Node* n = dying;
    if (n) dying = reinterpret_cast<Node*>(static_cast<std::uintptr_t>(n->mark));
    return n;
}

void destroy(Node* n) noexcept {
    if (draining) {
        push_dying(n);
        return;
    }
    draining = true;
    NodeFreer freer;
    for (Node* d = n; d;) {
        // Free d and release its children; the first child that dies is freed next without a
        // trip through `dying`, so a chain is torn down in one straight loop.
        Node* next = nullptr;
        const std::uint32_t count = d->count;
        Node* const* kids = children(d);
        for (std::uint32_t i = 0; i < count; ++i) {
            Node* k = kids[i];
            if (k->flags & owned_by_object) {
                if (!release_handle_in_place(k->handle)) {
                    freer.flush();  // the object goes, and Python code may use the pool
                    hooks.release_handle(k->handle);  // may come back here: it only pushes
                }
            } else if (--k->refs == 0) {
                if (next) {
                    push_dying(k);
                } else {
                    next = k;
                }
            }
        }
        if (count > 2) delete[] d->operands.list;
        freer.free(d);
        if (!next) next = pop_dying();
        d = next;
    }
    freer.flush();
    draining = false;
}

// A node whose children are being visited, and the index of the child to resume from: the
// index is in the address's low bits (nodes are 8-aligned), or past 6 in an entry of its own
// below it. Eight bytes a frame instead of 16: a chain's stack is as deep as the chain.
using Frame = std::uintptr_t;
constexpr Frame index_bits = 7;
static_assert(alignof(Node) > index_bits, "a node's address leaves room for an index");

// Note [Scratch that shrinks]
// Scratch space kept between passes saves a training step its allocations, but one big graph
// would leave its peak behind for good: past this many entries (a graph of ~260,000 nodes,
// four times the demo's), a pass frees what it used.
constexpr std::size_t most_kept_scratch = std::size_t{1} << 18;
template <class T>
void shrink_scratch(std::vector<T>& scratch) {
    if (scratch.capacity() > most_kept_scratch) std::vector<T>().swap(scratch);
}

// The traversal stays a function of its own: inlined into backward(), it would share registers
// with the pass and spill its own.
#if defined(_MSC_VER)
#define MG_NOINLINE __declspec(noinline)
#else
#define MG_NOINLINE __attribute__((noinline))
#endif

// The traversal's stack of frames. The traversal keeps its top and room in locals, which stay
// in registers (a std::vector's would be reloaded from memory after each store to a node).
class FrameStack {
  public:
    Frame* frames() { return frames_.get(); }
    std::size_t room() const { return room_; }
    // Room for at least `needed` frames, keeping the first `depth`.
    Frame* grow(std::size_t depth, std::size_t needed) {
        std::size_t room = room_ ? 2 * room_ : 256;
        while (room < needed) room *= 2;
        std::unique_ptr<Frame[]> bigger(new Frame[room]);
        if (depth) std::memcpy(bigger.get(), frames_.get(), depth * sizeof(Frame));
        frames_ = std::move(bigger);
        room_ = room;
        return frames_.get();
    }
    void shrink() {  // Note [Scratch that shrinks]
        if (room_ > most_kept_scratch) {
            frames_.reset();
            room_ = 0;
        }
    }

  private:
    std::unique_ptr<Frame[]> frames_;
    std::size_t room_ = 0;
};

// Traversal scratch space, reused across calls unless a call is already using it (a Python
// _backward may run backward() again before the outer call finishes).
FrameStack shared_stack;
bool shared_stack_busy = false;

// Claims the shared scratch space unless it is in use, and gives it back however the scope
// ends (a traversal that runs out of memory throws std::bad_alloc).
class SharedScratch {
  public:
    SharedScratch() : claimed_(!shared_stack_busy) { shared_stack_busy = true; }
    ~SharedScratch() { give_back(); }
    SharedScratch(const SharedScratch&) = delete;
    SharedScratch& operator=(const SharedScratch&) = delete;
    bool claimed() const { return claimed_; }
    void give_back() {
        if (claimed_) shared_stack_busy = false;
        claimed_ = false;
    }

  private:
    bool claimed_;
};

// Releases the nodes it holds when the scope ends, however it ends.
struct Pinned {
    std::vector<Node*> nodes;
    Pinned() = default;
    Pinned(const Pinned&) = delete;
    Pinned& operator=(const Pinned&) = delete;
    ~Pinned() {
        for (Node* n : nodes) release(n);
    }
};
std::uint64_t last_mark = 0;

// Returns the union of the visited nodes' flags. Without all_leaves, only the leaves with a
// Python _backward are in the order (backward() has nothing to do at the others).
template <bool all_leaves>
MG_NOINLINE std::uint8_t topological_order_with(Node* root, std::vector<Node*>& order,
                                                FrameStack& stack) {
    const std::uint64_t mark = ++last_mark;
    std::uint8_t flags = root->flags;
    order.clear();
    root->mark = mark;
    // The node being expanded and its next child stay in registers; the stack holds its
    // ancestors, each with the index of the child to resume from.
    Node* n = root;
    std::uint32_t next = 0;
    Frame* frames = stack.frames();
    std::size_t depth = 0, room = stack.room();
    for (;;) {
        std::uint32_t count = child_count(n);
        Node* const* kids = children(n);
        while (next < count) {
            Node* k = kids[next++];
            if (k->mark == mark) continue;
            k->mark = mark;
            flags |= k->flags;
            if (child_count(k) == 0) {  // a leaf is finished as soon as it is reached
                if (all_leaves || (k->flags & has_python_backward)) order.push_back(k);
                continue;
            }
            if (room - depth < 2) {
                frames = stack.grow(depth, depth + 2);
                room = stack.room();
            }
            const auto address = reinterpret_cast<Frame>(n);
            if (next < index_bits) {
                frames[depth++] = address | next;
            } else {
                frames[depth++] = next;
                frames[depth++] = address | index_bits;
            }
            n = k;
            next = 0;
            count = child_count(n);
            kids = children(n);
        }
        order.push_back(n);
        if (depth == 0) return flags;
        const Frame top = frames[--depth];
        next = static_cast<std::uint32_t>(top & index_bits);
        if (next == index_bits) next = static_cast<std::uint32_t>(frames[--depth]);
        n = reinterpret_cast<Node*>(top & ~index_bits);
    }
}

// Whether `target` is reachable from any of `roots` (used to refuse a cycle).
bool reaches(Node* const* roots, std::size_t count, Node* target) {
    std::vector<Node*> seen;
    for (std::size_t i = 0; i < count; ++i) {
        topological_order(roots[i], seen);
        for (Node* n : seen) {
            if (n == target) return true;
        }
    }
    return false;
}

}  // namespace

void release(Node* n) {
    if (n->flags & owned_by_object) {
        release_handle(n->handle);
    } else if (--n->refs == 0) {
        destroy(n);
    }
}

// ---------------------------------------------------------------------------------------------
// Forward: each op computes its value first, so an op that fails creates nothing.

Node* new_leaf(double data) { return make(Op::leaf, data, 0); }

Node* add(Node* a, Node* b) { return add_taking(retained(a), retained(b)); }
Node* mul(Node* a, Node* b) { return mul_taking(retained(a), retained(b)); }
Node* add_taking(Node* a, Node* b) {
    double out;
    forward_value(Op::add, a->data, b->data, 0.0, &out);
    return binary(Op::add, a, b, out);
}
Node* mul_taking(Node* a, Node* b) {
    double out;
    forward_value(Op::mul, a->data, b->data, 0.0, &out);
    return binary(Op::mul, a, b, out);
}
// The leaf first: if it cannot be made, nothing was retained.
Node* add_constant(Node* a, double c) {
    Node* constant = new_leaf(c);
    return add_taking(retained(a), constant);
}
Node* mul_constant(Node* a, double c) {
    Node* constant = new_leaf(c);
    return mul_taking(retained(a), constant);
}

namespace {

// A unary op's node over a (borrowed), or null with *status set if its forward fails. The
// forward runs first, so a failure, or no memory for the node, leaves a's references as they were.
Node* unary_op(Op op, Node* a, double exponent, Status* status) {
    double out;
    *status = forward_value(op, a->data, 0.0, exponent, &out);
    if (*status != Status::ok) return nullptr;
    Node* n = unary(op, retained(a), out);
    if (op == Op::pow) n->operands.pow.exponent = exponent;
    return n;
}

}  // namespace

Node* pow(Node* a, double exponent, Status* status) {
    return unary_op(Op::pow, a, exponent, status);
}

Node* relu(Node* a) { return relu_taking(retained(a)); }
Node* relu_taking(Node* a) {
    double out;
    forward_value(Op::relu, a->data, 0.0, 0.0, &out);
    return unary(Op::relu, a, out);
}

Node* tanh(Node* a) {
    Status ok;
    return unary_op(Op::tanh, a, 0.0, &ok);
}

Node* exp(Node* a, Status* status) { return unary_op(Op::exp, a, 0.0, status); }
Node* log(Node* a, Status* status) { return unary_op(Op::log, a, 0.0, status); }
Node* unary_node(Op op, Node* a, Status* status) { return unary_op(op, a, 0.0, status); }

bool set_children(Node* n, Node* const* kids, std::size_t count, bool may_have_parents) {
    if (count && may_have_parents && reaches(kids, count, n)) return false;
    assign_children(n, kids, count);
    return true;
}

Node* clone(const Node* n, Node* const* kids, std::size_t count) {
    const int arity = facts(n->op).arity;
    if (arity == any_arity ? count == 0 : count != static_cast<std::size_t>(arity)) return nullptr;
    Node* c = make(Op::leaf, n->data, 0);
    try {
        assign_children(c, kids, count);
    } catch (...) {
        release(c);  // a leaf still: nothing else to give back
        throw;
    }
    c->grad = n->grad;
    c->op = n->op;
    if (n->op == Op::pow) c->operands.pow.exponent = n->operands.pow.exponent;
    c->flags |= n->flags & exponent_is_int;
    return c;
}

static void assign_children(Node* n, Node* const* kids, std::size_t count) {
    // The list first: if there is no memory for it, nothing has changed. Retain the new
    // children before releasing the old ones: they may be the same nodes.
    Node** list = count > 2 ? new Node*[count] : nullptr;
    for (std::size_t i = 0; i < count; ++i) {
        retain(kids[i]);
        mark_as_operand(n, kids[i]);
    }
    const std::uint32_t old_count = n->count;
    Node* old_pair[2] = {n->operands.pair[0], n->operands.pair[1]};
    Node** old_list = old_count > 2 ? n->operands.list : nullptr;

    if (count <= 2) {
        n->operands.pair[0] = count > 0 ? kids[0] : nullptr;
        n->operands.pair[1] = count > 1 ? kids[1] : nullptr;
    } else {
        n->operands.list = list;
        for (std::size_t i = 0; i < count; ++i) n->operands.list[i] = kids[i];
    }
    n->count = static_cast<std::uint32_t>(count);
    n->op = count ? Op::custom : Op::leaf;
    if (count) n->flags |= has_had_children;

    Node* const* old = old_list ? old_list : old_pair;
    for (std::uint32_t i = 0; i < old_count; ++i) release(old[i]);
    delete[] old_list;
}

// ---------------------------------------------------------------------------------------------
// Backward

void topological_order(Node* root, std::vector<Node*>& order) {
    settle();  // Note [Deferred stores]
    FrameStack stack;
    topological_order_with<true>(root, order, stack);
}

namespace {

inline Status builtin_rule(Node* n) {
    if (!is_builtin(n->op)) return Status::ok;
    Node* a = n->operands.pair[0];
    Node* b = is_binary(n->op) ? n->operands.pair[1] : a;
    const double e = n->op == Op::pow ? n->operands.pow.exponent : 0.0;
    return accumulate_gradient(n->op, n->data, n->grad, e, a->data, b->data, &a->grad, &b->grad);
}

inline Status local_rule(Node* n) {
    if (n->flags & has_python_backward) {
        const Status status = hooks.run_python_backward(n);
        // The user's code may have replayed a program, which settle() marks in step with the
        // nodes; the built-in rules that follow write grads it holds (Note [Deferred stores]).
        settle();
        grads_written();
        return status;
    }
    return builtin_rule(n);
}

}  // namespace

// Both write grads a program may keep (Note [Deferred stores]).
Status apply_local_rule(Node* n) {
    settle();
    grads_written();
    return local_rule(n);
}
Status apply_builtin_rule(Node* n) {
    settle();
    grads_written();
    return builtin_rule(n);
}

Status backward(Node* root) {
    static std::vector<Node*> shared_order;
    std::vector<Node*> own_order;
    FrameStack own_stack;
    SharedScratch scratch;
    std::vector<Node*>& order = scratch.claimed() ? shared_order : own_order;
    FrameStack& stack = scratch.claimed() ? shared_stack : own_stack;

    settle();  // Note [Deferred stores]
    const std::uint8_t flags = topological_order_with<false>(root, order, stack);
    stack.shrink();
    grads_written();
    root->grad = 1.0;
    Status status = Status::ok;
    if (!(flags & has_python_backward)) {
        for (std::size_t i = order.size(); i-- > 0;) {
            status = builtin_rule(order[i]);
            if (status != Status::ok) break;
        }
        shrink_scratch(order);
        return status;
    }

    // A Python _backward may drop the last reference to a node still to be visited, or run
    // backward() again: keep every node alive, and the order private, until the pass is over.
    for (Node* n : order) retain(n);
    Pinned pinned;
    pinned.nodes.swap(order);
    scratch.give_back();
    for (std::size_t i = pinned.nodes.size(); i-- > 0;) {
        status = local_rule(pinned.nodes[i]);
        if (status != Status::ok) break;
    }
    return status;
}

}  // namespace mg
