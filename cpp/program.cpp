#include "program.hpp"

#include <algorithm>
#include <memory>

#include "rules.hpp"

namespace mg {

namespace {

// While compiling, a node's mark holds its index with this bit set. Traversal marks count up
// from 1 and never reach it, and compile() resets the marks to 0 (never a traversal's) after.
constexpr std::uint64_t index_tag = std::uint64_t{1} << 63;

// Whether replaying this node can raise: its op's can_fail (Note [Op table]).
bool can_fail(const Node* n) { return facts(n->op).can_fail(n->data); }

// The non-leaf nodes of `order` (children first) in the order of Note [Slots]: by level, then
// op, then micrograd's order. first and second are the operands' indices in `order`.
std::vector<std::uint32_t> rule_order(const std::vector<Node*>& order,
                                      const std::vector<std::uint32_t>& first,
                                      const std::vector<std::uint32_t>& second) {
    const std::size_t count = order.size();
    std::vector<std::uint32_t> rules;  // micrograd's order: the root first
    for (std::size_t i = count; i-- > 0;) {
        if (order[i]->op != Op::leaf) rules.push_back(static_cast<std::uint32_t>(i));
    }

    // level[i]: 1 + the level of the rules that must run before i's. writer[k] is the level of
    // the last rule so far that added to k's grad.
    std::vector<std::uint32_t> level(count, 0), writer(count, 0);
    std::uint32_t deepest = 0;
    for (std::uint32_t i : rules) {
        const std::uint32_t a = first[i], b = second[i];
        level[i] = writer[a] = writer[b] = std::max({writer[i], writer[a], writer[b]}) + 1;
        deepest = std::max(deepest, level[i]);
    }
    // Stable counting sorts by op, then by level: ordered by level, then op, then micrograd.
    const auto sort_by = [&rules](std::size_t keys, auto key_of) {
        std::vector<std::uint32_t> start(keys + 1, 0), sorted(rules.size());
        for (std::uint32_t i : rules) ++start[key_of(i) + 1];
        for (std::size_t k = 1; k <= keys; ++k) start[k] += start[k - 1];
        for (std::uint32_t i : rules) sorted[start[key_of(i)]++] = i;
        rules.swap(sorted);
    };
    sort_by(op_count, [&order](std::uint32_t i) { return static_cast<std::size_t>(order[i]->op); });
    sort_by(std::size_t{deepest} + 1, [&level](std::uint32_t i) { return std::size_t{level[i]}; });
    return rules;
}

// The slots of the non-leaf nodes of `order` in the order they were made, oldest first (Note
// [Creation order]); empty if the nodes' stamps do not give a topological order (the graph was
// made over more than 2**32 creations).
std::vector<std::uint32_t> creation_order(const std::vector<Node*>& order,
                                          const std::vector<std::uint32_t>& first,
                                          const std::vector<std::uint32_t>& second,
                                          const std::vector<std::uint32_t>& slot) {
    const std::uint32_t newest = order.back()->made;  // the root's
    std::vector<std::uint32_t> inner;                 // indices in `order`
    for (std::size_t i = 0; i < order.size(); ++i) {
        if (order[i]->op != Op::leaf) inner.push_back(static_cast<std::uint32_t>(i));
    }
    std::stable_sort(inner.begin(), inner.end(), [&](std::uint32_t a, std::uint32_t b) {
        return std::uint32_t(newest - order[a]->made) > std::uint32_t(newest - order[b]->made);
    });
    std::vector<bool> done(order.size());
    for (const std::uint32_t i : inner) {
        for (std::uint32_t operand : {first[i], second[i]}) {
            if (order[operand]->op != Op::leaf && !done[operand]) return {};
        }
        done[i] = true;
    }
    for (std::uint32_t& i : inner) i = slot[i];
    return inner;
}

// A program's arrays, as the passes below use them.
struct Arrays {
    const std::uint32_t* first;
    const std::uint32_t* second;
    const double* exponent;
    double* data;
    double* grad;
};

// The op of each slot: one for a whole run, known when compiling, or read per slot.
template <Op op>
struct Fixed {
    Op operator()(std::size_t) const { return op; }
};
struct PerSlot {
    const Op* ops;
    Op operator()(std::size_t s) const { return ops[s]; }
};

// The slot a pass visits k-th: the k-th itself, or the k-th of a list (from `begin` on).
struct Consecutive {
    std::size_t operator()(std::size_t k) const { return k; }
};
struct Listed {
    const std::uint32_t* slots;
    std::size_t begin;
    std::size_t operator()(std::size_t k) const { return slots[k - begin]; }
};

// Passes over the slots [begin, end): forward from begin, backward from end. Each returns the
// slot that failed (with *status set) or, if none did, the slot it stopped at. With a Fixed op
// the loop has no branch on the op. Either may visit the slots in another order (slot_at).
// Forward resets the grads it recomputes if zero_grads, else leaves that to its caller.
template <bool zero_grads, typename OpAt, typename SlotAt = Consecutive>
std::size_t forward_pass(OpAt op_at, const Arrays& t, std::size_t begin, std::size_t end,
                         Status* status, SlotAt slot_at = {}) {
    for (std::size_t k = begin; k < end; ++k) {
        const std::size_t s = slot_at(k);
        double out;
        *status =
            forward_value(op_at(s), t.data[t.first[s]], t.data[t.second[s]], t.exponent[s], &out);
        if (*status != Status::ok) return k;
        t.data[s] = out;
        if (zero_grads) t.grad[s] = 0.0;  // as in a rebuilt graph
    }
    return end;
}

template <typename OpAt, typename SlotAt = Consecutive>
std::size_t backward_pass(OpAt op_at, const Arrays& t, std::size_t begin, std::size_t end,
                          Status* status, SlotAt slot_at = {}) {
    for (std::size_t k = end; k-- > begin;) {
        const std::size_t s = slot_at(k);
        const std::uint32_t a = t.first[s], b = t.second[s];
        *status = accumulate_gradient(op_at(s), t.data[s], t.grad[s], t.exponent[s], t.data[a],
                                      t.data[b], &t.grad[a], &t.grad[b]);
        if (*status != Status::ok) return k;
    }
    return begin;
}

// Forward over a run; with zero_grads false, the caller resets the grads once the whole pass
// succeeded.
template <bool zero_grads>
struct Forward {
    template <Op op>
    struct Pass {
        static std::size_t run(const Arrays& t, std::size_t begin, std::size_t end,
                               Status* status) {
            return forward_pass<zero_grads>(Fixed<op>{}, t, begin, end, status);
        }
    };
};

template <Op op>
struct Backward {
    static std::size_t run(const Arrays& t, std::size_t begin, std::size_t end, Status* status) {
        return backward_pass(Fixed<op>{}, t, begin, end, status);
    }
};

// Pass<op>::run over a run of slots of one op, the op a constant in its loop.
template <template <Op> class Pass>
std::size_t run(Op op, const Arrays& t, std::size_t begin, std::size_t end, Status* status) {
    return with_rule(
        op, [&](auto rule) { return Pass<decltype(rule)::op>::run(t, begin, end, status); });
}

}  // namespace

Program* Program::compile(Node* root, Node** refused) {
    std::vector<Node*> order;
    topological_order(root, order);
    for (Node* n : order) {
        if (n->op == Op::custom || (n->flags & has_python_backward)) {
            *refused = n;
            return nullptr;
        }
    }

    // Operands by index in `order`.
    const std::size_t count = order.size();
    std::vector<std::uint32_t> first(count, 0), second(count, 0);
    for (std::size_t i = 0; i < count; ++i) order[i]->mark = index_tag | i;
    for (std::size_t i = 0; i < count; ++i) {
        Node* n = order[i];
        if (n->op == Op::leaf) continue;
        Node* a = n->operands.pair[0];
        Node* b = is_binary(n->op) ? n->operands.pair[1] : a;
        first[i] = static_cast<std::uint32_t>(a->mark & ~index_tag);
        second[i] = static_cast<std::uint32_t>(b->mark & ~index_tag);
    }
    for (Node* n : order) n->mark = 0;

    // Slots: the leaves, then the rules from the last to the first (Note [Slots]).
    std::vector<std::uint32_t> slot(count);
    std::uint32_t next = 0;
    for (std::size_t i = 0; i < count; ++i) {
        if (order[i]->op == Op::leaf) slot[i] = next++;
    }
    const std::uint32_t leaves = next;
    bool can_fail_somewhere = false;
    for (const Node* n : order) can_fail_somewhere = can_fail_somewhere || can_fail(n);
    const std::vector<std::uint32_t> rules = rule_order(order, first, second);
    for (std::size_t r = 0; r < rules.size(); ++r) {
        slot[rules[r]] = static_cast<std::uint32_t>(count - 1 - r);
    }

    // Out of memory (std::bad_alloc), the program is deleted: nodes_ gets its null slots last,
    // and they are all filled before anything else can throw.
    std::unique_ptr<Program> p(new Program());
    p->ops_.resize(count);
    p->first_.assign(count, 0);
    p->second_.assign(count, 0);
    p->exponent_.assign(count, 0.0);
    p->data_.resize(count);
    p->grad_.resize(count);
    p->nodes_.resize(count);
    p->leaves_ = leaves;
    for (std::size_t i = 0; i < count; ++i) {
        Node* n = order[i];
        const std::uint32_t s = slot[i];
        retain(n);
        p->nodes_[s] = n;
        p->ops_[s] = n->op;
        p->data_[s] = n->data;
        p->grad_[s] = n->grad;
        if (n->op == Op::leaf) continue;
        p->first_[s] = slot[first[i]];
        p->second_[s] = slot[second[i]];
        if (n->op == Op::pow) p->exponent_[s] = n->operands.pow.exponent;
    }
    if (can_fail_somewhere) {  // the orders a failed pass is redone in (Note [Failed passes])
        for (std::size_t i = 0; i < count; ++i) {
            if (order[i]->op != Op::leaf) p->micrograd_order_.push_back(slot[i]);
        }
        p->made_order_ = creation_order(order, first, second, slot);
        if (p->made_order_.empty()) p->made_order_ = p->micrograd_order_;
        p->spare_.resize(count);
    }
    p->list_visible();
    for (std::size_t s = leaves; s < count; ++s) {
        if (p->runs_.empty() || p->runs_.back().op != p->ops_[s]) {
            p->runs_.push_back({p->ops_[s], static_cast<std::uint32_t>(s), 0});
        }
        p->runs_.back().end = static_cast<std::uint32_t>(s + 1);
    }
    // Short runs (a narrow graph, of mixed ops) cost more than they save.
    if (p->runs_.size() * 4 > count - leaves) p->runs_.clear();
    p->grads_read_at_ = inner_grad_writes;
    return p.release();
}

Program::~Program() {
    settle();
    for (Node* n : nodes_) release(n);
}

void Program::settle() {
    if (unsettled != this) return;
    // The nodes without a Python object are the ones left; none got one since (expose()).
    for (std::size_t s = 0; s < nodes_.size(); ++s) {
        Node* n = nodes_[s];
        if (n->handle) continue;
        if (holding_data_ && s >= leaves_) n->data = data_[s];
        n->grad = grad_[s];
    }
    unsettled = nullptr;
    grads_read_at_ = ++inner_grad_writes;
}

void Program::begin_pass() {
    if (unsettled && unsettled != this) unsettled->settle();
    if (visible_at_ != exposures) list_visible();
}

void Program::list_visible() {
    visible_.clear();
    for (std::size_t s = 0; s < nodes_.size(); ++s) {
        if (nodes_[s]->handle) visible_.push_back(static_cast<std::uint32_t>(s));
    }
    visible_at_ = exposures;
}

void Program::defer(bool holding_data) {
    if (unsettled == this) {
        holding_data_ = holding_data_ || holding_data;
    } else {
        unsettled = this;
        holding_data_ = holding_data;
    }
    count_grad_writes();
}

void Program::count_grad_writes() {
    // Other programs over these nodes must re-read their grads; this one stays in step with
    // the nodes only if it was before (a grad set by hand past a failure is not in grad_).
    const bool in_step = grads_read_at_ == inner_grad_writes;
    ++inner_grad_writes;
    if (in_step) grads_read_at_ = inner_grad_writes;
}

Status Program::forward() {
    begin_pass();
    const bool is_unsettled = unsettled == this;
    const std::size_t count = nodes_.size();
    // A graph that can fail computes into spare_, keeping data_ and the inner grads as they were
    // in case it must redo the pass (Note [Failed passes]).
    const bool may_fail = !made_order_.empty();
    double* const out = may_fail ? spare_.data() : data_.data();
    for (std::size_t s = 0; s < leaves_; ++s) {
        out[s] = nodes_[s]->data;
        // Settled, the nodes hold the leaves' grads; unsettled, grad_ does for the hidden ones.
        if (!is_unsettled) grad_[s] = nodes_[s]->grad;
    }
    Status status = Status::ok;
    const Arrays fast{first_.data(), second_.data(), exponent_.data(), out, grad_.data()};
    if (runs_.empty() && may_fail) {
        forward_pass<false>(PerSlot{ops_.data()}, fast, leaves_, count, &status);
    } else if (runs_.empty()) {
        forward_pass<true>(PerSlot{ops_.data()}, fast, leaves_, count, &status);
    } else if (may_fail) {
        for (const Run& r : runs_) {
            run<Forward<false>::Pass>(r.op, fast, r.begin, r.end, &status);
            if (status != Status::ok) break;
        }
    } else {
        for (const Run& r : runs_) {
            run<Forward<true>::Pass>(r.op, fast, r.begin, r.end, &status);
            if (status != Status::ok) break;
        }
    }
    if (status == Status::ok && may_fail) {
        data_.swap(spare_);
        std::fill(grad_.begin() + static_cast<std::ptrdiff_t>(leaves_), grad_.end(), 0.0);
    }
    // The made_order_ slots visited before `done` (from leaves_ on) have their new values.
    std::size_t done = leaves_;
    if (status != Status::ok && may_fail) {
        // Rare: redo the pass in the order a rebuild computes, from the values before it.
        for (std::size_t s = 0; s < leaves_; ++s) data_[s] = out[s];
        const Arrays arrays{first_.data(), second_.data(), exponent_.data(), data_.data(),
                            grad_.data()};
        status = Status::ok;
        done = forward_pass<true>(PerSlot{ops_.data()}, arrays, leaves_, count, &status,
                                  Listed{made_order_.data(), leaves_});
    }
    if (status == Status::ok) {
        for (std::uint32_t s : visible_) {
            if (s < leaves_) continue;
            nodes_[s]->data = data_[s];
            nodes_[s]->grad = 0.0;
        }
        defer(true);
        return status;
    }

    // Store everything at once. The nodes before the failing one show their new values; the
    // others keep what they held, which for the hidden ones of an unsettled program is still in
    // data_ and grad_.
    for (std::size_t k = leaves_; k < done; ++k) {
        const std::size_t s = made_order_[k - leaves_];
        nodes_[s]->data = data_[s];
        nodes_[s]->grad = 0.0;
    }
    if (is_unsettled) {
        settle();
    } else {
        count_grad_writes();
    }
    return status;
}

Status Program::backward() {
    begin_pass();
    const bool is_unsettled = unsettled == this;
    const std::size_t count = nodes_.size();
    // Start from the nodes' grads. Those with a Python object may have been set since (zero_grad
    // on the parameters); the others only by something that walked the graph, which counted
    // in inner_grad_writes, unless grad_ holds them (unsettled).
    if (!is_unsettled && grads_read_at_ != inner_grad_writes) {
        for (std::size_t s = 0; s < count; ++s) grad_[s] = nodes_[s]->grad;
    } else {
        for (std::uint32_t s : visible_) grad_[s] = nodes_[s]->grad;
    }
    grad_[count - 1] = 1.0;  // the root
    // A graph that can fail keeps the grads it starts from (Note [Failed passes]).
    const bool may_fail = !micrograd_order_.empty();
    if (may_fail) std::copy(grad_.begin(), grad_.end(), spare_.begin());
    Status status = Status::ok;
    const Arrays arrays{first_.data(), second_.data(), exponent_.data(), data_.data(),
                        grad_.data()};
    if (runs_.empty()) backward_pass(PerSlot{ops_.data()}, arrays, leaves_, count, &status);
    for (auto r = runs_.rbegin(); r != runs_.rend(); ++r) {
        run<Backward>(r->op, arrays, r->begin, r->end, &status);
        if (status != Status::ok) break;
    }
    if (status != Status::ok && may_fail) {
        // Rare: redo the pass in micrograd's order, from the grads before it.
        std::copy(spare_.begin(), spare_.end(), grad_.begin());
        status = Status::ok;
        backward_pass(PerSlot{ops_.data()}, arrays, leaves_, count, &status,
                      Listed{micrograd_order_.data(), leaves_});
    }
    for (std::uint32_t s : visible_) nodes_[s]->grad = grad_[s];
    defer(false);
    // Rare: a failure stores every grad accumulated so far at once, as root.backward() would
    // leave them.
    if (status != Status::ok) settle();
    return status;
}

void Program::zero_grad() {
    begin_pass();
    std::fill(grad_.begin(), grad_.end(), 0.0);
    for (std::uint32_t s : visible_) nodes_[s]->grad = 0.0;
    defer(false);
}

}  // namespace mg
