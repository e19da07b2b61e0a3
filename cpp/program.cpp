#include "program.hpp"

#include <algorithm>
#include <memory>

#include "rules.hpp"

namespace mg {

namespace {

// While compiling, a node's mark holds its index with this bit set. Traversal marks count up
// from 1 and never reach it, and compile() resets the marks to 0 (never a traversal's) after.
constexpr std::uint64_t index_tag = std::uint64_t{1} << 63;

// However compile() ends, resets to 0 the marks of the nodes from order[reset_from] on (those
// before it were reset on the way).
struct MarkedIndices {
    const std::vector<Node*>& order;
    std::size_t reset_from = 0;
    explicit MarkedIndices(const std::vector<Node*>& nodes) : order(nodes) {}
    MarkedIndices(const MarkedIndices&) = delete;
    MarkedIndices& operator=(const MarkedIndices&) = delete;
    ~MarkedIndices() {
        for (std::size_t i = reset_from; i < order.size(); ++i) order[i]->mark = 0;
    }
};

// Whether replaying this node can raise: its op's can_fail (Note [Op table]).
bool can_fail(const Node* n) { return facts(n->op).can_fail(n->data); }

// While compiling, the nodes of the topological order are known by their index in it: ops[i]
// is node i's op, first[i] and second[i] its operands' indices.
using Ops = std::vector<Op>;
using Indices = std::vector<std::uint32_t>;

// The operands whose grads node i's rule adds to, in the order it adds (Note [Op table]).
template <typename F>
void for_each_target(const Ops& ops, const Indices& first, const Indices& second, std::uint32_t i,
                     F f) {
    f(first[i]);
    if (is_binary(ops[i])) f(second[i]);
}

// Chains of sums of products (Note [Chains]): links[i] is the number of links of the chain
// whose top (its last sum) is node i, 0 for other nodes; inner[i] marks the chain's other
// nodes, which only their chain reads.
struct Chains {
    std::vector<std::uint32_t> links;
    std::vector<bool> inner;
    bool any = false;
};

constexpr std::uint32_t shortest_chain = 4;  // shorter sums replay as ordinary rules

Chains find_chains(const Ops& ops, const Indices& first, const Indices& second) {
    const std::size_t count = ops.size();
    std::vector<std::uint32_t> parents(count, 0);
    for (std::uint32_t i = 0; i < count; ++i) {
        if (ops[i] == Op::leaf) continue;
        for_each_target(ops, first, second, i, [&](std::uint32_t t) { ++parents[t]; });
    }
    // A link: a sum whose second operand is a product only it reads. It continues the chain
    // of its first operand if that is a link only it reads.
    const auto is_link = [&](std::uint32_t i) {
        return ops[i] == Op::add && first[i] != second[i] && ops[second[i]] == Op::mul &&
               parents[second[i]] == 1;
    };
    const auto continues = [&](std::uint32_t i) {
        return is_link(i) && is_link(first[i]) && parents[first[i]] == 1;
    };
    Chains c;
    c.links.assign(count, 0);
    c.inner.assign(count, false);
    std::vector<bool> continued(count, false);
    for (std::uint32_t i = 0; i < count; ++i) {
        if (continues(i)) continued[first[i]] = true;
    }
    for (std::uint32_t i = 0; i < count; ++i) {
        if (!is_link(i) || continued[i]) continue;
        std::uint32_t links = 1;
        for (std::uint32_t j = i; continues(j); j = first[j]) ++links;
        if (links < shortest_chain) continue;
        c.links[i] = links;
        c.any = true;
        for (std::uint32_t j = i;; j = first[j]) {
            if (j != i) c.inner[j] = true;
            c.inner[second[j]] = true;
            if (!continues(j)) break;
        }
    }
    return c;
}

// The non-leaf nodes (children first) in the order of Note [Slots]: by level, then op (a chain
// after every op), then micrograd's order; a chain's nodes together, from its top down, each
// sum before its product. level_of gets each rule's level, in the same order.
std::vector<std::uint32_t> rule_order(const Ops& ops, const Indices& first, const Indices& second,
                                      const Chains& chains, std::vector<std::uint32_t>& level_of) {
    const std::size_t count = ops.size();
    const bool any_chain = chains.any;
    const std::size_t non_leaves =
        count - static_cast<std::size_t>(std::count(ops.begin(), ops.end(), Op::leaf));
    std::vector<std::uint32_t> rules;  // micrograd's order, the root first; a chain by its top
    rules.reserve(non_leaves);
    for (std::size_t i = count; i-- > 0;) {
        if (ops[i] != Op::leaf && !(any_chain && chains.inner[i])) {
            rules.push_back(static_cast<std::uint32_t>(i));
        }
    }

    // level[i]: 1 + the level of the rules that must run before i's. writer[k] is the level of
    // the last rule so far that added to k's grad.
    std::vector<std::uint32_t> level(count, 0), writer(count, 0);
    std::uint32_t deepest = 0;
    for (std::uint32_t i : rules) {
        std::uint32_t above = writer[i];
        // A chain's rules add to the operands of its products and to its first sum's first.
        const auto each_target = [&](auto f) {
            if (!any_chain || chains.links[i] == 0) {
                for_each_target(ops, first, second, i, f);
                return;
            }
            for (std::uint32_t j = i;; j = first[j]) {
                for_each_target(ops, first, second, second[j], f);
                if (!chains.inner[first[j]]) {
                    f(first[j]);  // the first sum's first operand
                    break;
                }
            }
        };
        each_target([&](std::uint32_t t) { above = std::max(above, writer[t]); });
        level[i] = above + 1;
        each_target([&](std::uint32_t t) { writer[t] = level[i]; });
        deepest = std::max(deepest, level[i]);
    }
    // Stable counting sorts by op, then by level: ordered by level, then op, then micrograd.
    std::vector<std::uint32_t> sorted(rules.size());
    const auto sort_by = [&rules, &sorted](std::size_t keys, auto key_of) {
        std::vector<std::uint32_t> start(keys + 1, 0);
        for (std::uint32_t i : rules) ++start[key_of(i) + 1];
        for (std::size_t k = 1; k <= keys; ++k) start[k] += start[k - 1];
        for (std::uint32_t i : rules) sorted[start[key_of(i)]++] = i;
        rules.swap(sorted);
    };
    sort_by(op_count + 1, [&](std::uint32_t i) {
        return any_chain && chains.links[i] ? op_count : static_cast<std::size_t>(ops[i]);
    });
    sort_by(std::size_t{deepest} + 1, [&level](std::uint32_t i) { return std::size_t{level[i]}; });
    level_of.clear();
    level_of.reserve(non_leaves);
    if (!any_chain) {
        for (std::uint32_t i : rules) level_of.push_back(level[i]);
        return rules;
    }
    std::vector<std::uint32_t> expanded;
    expanded.reserve(non_leaves);
    for (std::uint32_t i : rules) {
        if (chains.links[i] == 0) {
            expanded.push_back(i);
            level_of.push_back(level[i]);
            continue;
        }
        for (std::uint32_t j = i;; j = first[j]) {  // each sum, then its product
            expanded.push_back(j);
            expanded.push_back(second[j]);
            level_of.push_back(level[i]);
            level_of.push_back(level[i]);
            if (!chains.inner[first[j]]) break;
        }
    }
    return expanded;
}

// Whether running the rules in `schedule` (each non-leaf node's once) gives every grad its
// terms in micrograd's order, each rule running after every rule that adds to its grad.
// micrograd runs the rules in reverse topological order, so a grad's terms must come from
// rules ever earlier in the topological order.
bool keeps_micrograds_order(const Ops& ops, const Indices& first, const Indices& second,
                            const std::vector<std::uint32_t>& schedule) {
    const std::size_t count = ops.size();
    // to_come[k]: the terms of k's grad still to come; last[k]: the rule that added the latest
    // (a rule may add twice: x*x).
    std::vector<std::uint32_t> to_come(count, 0), last(count, ~std::uint32_t{0});
    for (std::uint32_t i = 0; i < count; ++i) {
        if (ops[i] == Op::leaf) continue;
        for_each_target(ops, first, second, i, [&](std::uint32_t t) { ++to_come[t]; });
    }
    for (std::uint32_t r : schedule) {
        if (to_come[r] != 0) return false;
        bool in_order = true;
        for_each_target(ops, first, second, r, [&](std::uint32_t t) {
            in_order = in_order && r <= last[t];
            last[t] = r;
            --to_come[t];
        });
        if (!in_order) return false;
    }
    return true;
}

constexpr std::uint32_t unplaced = ~std::uint32_t{0};

// Gives the leaves their slots, from 0 on, as Note [Leaf layout] orders them, in slot
// (unplaced before); returns how many there are.
std::uint32_t place_leaves(const Ops& ops, const Indices& first, const Indices& second,
                           const Chains& chains, std::vector<std::uint32_t>& slot) {
    std::uint32_t next = 0;
    const auto place = [&](std::uint32_t i) {
        if (ops[i] == Op::leaf && slot[i] == unplaced) slot[i] = next++;
    };
    std::vector<std::uint32_t> products;  // a chain's, from its top down
    for (std::size_t i = 0; chains.any && i < ops.size(); ++i) {
        if (chains.links[i] == 0) continue;
        products.clear();
        for (std::uint32_t j = static_cast<std::uint32_t>(i);; j = first[j]) {
            products.push_back(second[j]);
            if (!chains.inner[first[j]]) break;
        }
        for (auto m = products.rbegin(); m != products.rend(); ++m) place(first[*m]);
        for (auto m = products.rbegin(); m != products.rend(); ++m) place(second[*m]);
    }
    for (std::size_t i = 0; i < ops.size(); ++i) place(static_cast<std::uint32_t>(i));
    return next;
}

// The non-leaf slots of a program's nodes in micrograd's order: topological_order's walk
// from the root (the last slot) over the operand slots, children first, each once.
std::vector<std::uint32_t> topological_slots(const std::vector<std::uint32_t>& first,
                                             const std::vector<std::uint32_t>& second,
                                             std::size_t leaves) {
    const std::size_t count = first.size();
    std::vector<std::uint32_t> order;
    order.reserve(count - leaves);
    std::vector<bool> seen(count);
    struct Frame {
        std::uint32_t slot, next;  // the operand to visit next: 0 first, 1 second, 2 none
    };
    std::vector<Frame> stack{{static_cast<std::uint32_t>(count - 1), 0}};
    while (!stack.empty()) {
        Frame& f = stack.back();
        if (f.next == 2) {
            order.push_back(f.slot);
            stack.pop_back();
            continue;
        }
        const std::uint32_t k = f.next++ == 0 ? first[f.slot] : second[f.slot];
        if (k < leaves || seen[k]) continue;  // a unary node's second operand is its first
        seen[k] = true;
        stack.push_back({k, 0});
    }
    return order;
}

// The non-leaf slots of `nodes` in the order they were made, oldest first (Note [Creation
// order]), from `inner`, the same in topological order; empty if the nodes' stamps do not give
// a topological order (the graph was made over more than 2**32 creations).
std::vector<std::uint32_t> creation_order(const std::vector<Node*>& nodes,
                                          const std::vector<std::uint32_t>& first,
                                          const std::vector<std::uint32_t>& second,
                                          std::size_t leaves, std::vector<std::uint32_t> inner) {
    const std::uint32_t newest = nodes.back()->made;  // the root's
    const auto age = [&](std::uint32_t s) { return std::uint32_t(newest - nodes[s]->made); };
    // The graph's nodes were mostly made one after another, so their ages (distinct, short of
    // 2**32 creations) cover a range not much wider than their number: each goes straight to
    // its place. Else, or if two share an age, a sort.
    std::uint32_t oldest = 0;
    for (const std::uint32_t s : inner) oldest = std::max(oldest, age(s));
    bool placed = std::size_t{oldest} < 4 * inner.size() + 64;
    if (placed) {
        constexpr std::uint32_t none = ~std::uint32_t{0};
        std::vector<std::uint32_t> by_age(std::size_t{oldest} + 1, none);
        for (const std::uint32_t s : inner) {
            std::uint32_t& place = by_age[age(s)];
            if (place != none) placed = false;
            place = s;
        }
        if (placed) {
            std::size_t k = 0;
            for (std::size_t a = by_age.size(); a-- > 0;) {
                if (by_age[a] != none) inner[k++] = by_age[a];
            }
        }
    }
    if (!placed) {
        std::stable_sort(inner.begin(), inner.end(),
                         [&](std::uint32_t a, std::uint32_t b) { return age(a) > age(b); });
    }
    std::vector<bool> done(nodes.size());
    for (const std::uint32_t s : inner) {
        for (std::uint32_t operand : {first[s], second[s]}) {
            if (operand >= leaves && !done[operand]) return {};
        }
        done[s] = true;
    }
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

// Note [Chains] kernels. A chain of n links at `base` holds its nodes in slots base + 2k (the
// product of link k) and base + 2k + 1 (its sum), k from 0 to n-1; `lanes` chains side by side,
// `span` slots apart, are independent (one level: Note [Chains]), so their sums interleave.
// With store_inside false (Note [Chains kept inside]) only the top sum is stored. The products'
// operand slots come from first_ and second_ (Indexed) or, where they step evenly along every
// chain of the run, from each chain's first slots and steps (Strided), which saves two loads
// a link.
struct Indexed {
    const Arrays& t;
    std::size_t first(int, std::size_t m, std::size_t) const { return t.first[m]; }
    std::size_t second(int, std::size_t m, std::size_t) const { return t.second[m]; }
};
struct Strided {
    const Program::Strides* chain;  // the lanes' chains
    std::size_t first(int l, std::size_t, std::size_t k) const {
        return static_cast<std::size_t>(chain[l].first +
                                        static_cast<std::int64_t>(k) * chain[l].first_step);
    }
    std::size_t second(int l, std::size_t, std::size_t k) const {
        return static_cast<std::size_t>(chain[l].second +
                                        static_cast<std::int64_t>(k) * chain[l].second_step);
    }
};

template <bool zero_grads, bool store_inside, int lanes, typename Operands>
void chains_forward(const Arrays& t, std::size_t base, std::size_t span, std::size_t links,
                    const Operands& operands) {
    double sum[lanes];
    for (int l = 0; l < lanes; ++l) sum[l] = t.data[t.first[base + l * span + 1]];
    for (std::size_t k = 0; k < links; ++k) {
        for (int l = 0; l < lanes; ++l) {
            const std::size_t m = base + l * span + 2 * k;
            double product;
            Rule<Op::mul>::forward(t.data[operands.first(l, m, k)],
                                   t.data[operands.second(l, m, k)], 0.0, &product);
            Rule<Op::add>::forward(sum[l], product, 0.0, &sum[l]);
            if (store_inside) {
                t.data[m] = product;
                t.data[m + 1] = sum[l];
                if (zero_grads) t.grad[m] = t.grad[m + 1] = 0.0;  // as in a rebuilt graph
            }
        }
    }
    if (store_inside) return;
    for (int l = 0; l < lanes; ++l) {
        const std::size_t top = base + l * span + span - 1;
        t.data[top] = sum[l];
        if (zero_grads) t.grad[top] = 0.0;
    }
}

// One link's rules in micrograd's order: the sum's (its first operand, then the product), then
// the product's. inside: whether the sum below is the chain's own (else the chain's start).
// Returns the grad of the sum below, which is final once this link's rule ran (only this link
// reads that sum), so it stays in a register for the next link. With store_inside false the
// inner grads start at zero and are not stored (Note [Chains kept inside]).
template <bool store_inside, bool inside, typename Operands>
double link_backward(const Arrays& t, std::size_t m, double g, const Operands& operands, int l,
                     std::size_t k) {
    const std::size_t below = inside ? m - 1 : t.first[m + 1];
    double below_grad = store_inside || !inside ? t.grad[below] : 0.0;
    double product_grad = store_inside ? t.grad[m] : 0.0;
    Rule<Op::add>::gradient(0.0, g, 0.0, 0.0, 0.0, &below_grad, &product_grad);
    if (store_inside || !inside) t.grad[below] = below_grad;
    if (store_inside) t.grad[m] = product_grad;
    const std::size_t a = operands.first(l, m, k), b = operands.second(l, m, k);
    Rule<Op::mul>::gradient(0.0, product_grad, 0.0, t.data[a], t.data[b], &t.grad[a], &t.grad[b]);
    return below_grad;
}

template <bool store_inside, int lanes, typename Operands>
void chains_backward(const Arrays& t, std::size_t base, std::size_t span, std::size_t links,
                     const Operands& operands) {
    double g[lanes];
    for (int l = 0; l < lanes; ++l) g[l] = t.grad[base + l * span + span - 1];
    for (std::size_t k = links - 1; k > 0; --k) {
        for (int l = 0; l < lanes; ++l) {
            g[l] =
                link_backward<store_inside, true>(t, base + l * span + 2 * k, g[l], operands, l, k);
        }
    }
    for (int l = 0; l < lanes; ++l) {
        link_backward<store_inside, false>(t, base + l * span, g[l], operands, l, 0);
    }
}

// out[k] += in[k] * g for k below n; out and in do not overlap.
void add_scaled(double* __restrict out, const double* __restrict in, double g, std::size_t n) {
    for (std::size_t k = 0; k < n; ++k) out[k] += in[k] * g;
}

// Where the compiler can, a loop with the same operations on each element gets a version for
// wider vector registers, chosen when the module loads, as the machine has them: the same
// IEEE additions and products, lane by lane, so the same results. The choice is made by the
// dynamic loader (an ifunc), which glibc's has and macOS's and musl's do not.
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MG_WIDER_VECTORS __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef MG_WIDER_VECTORS
#define MG_WIDER_VECTORS
#endif

// The rules of a run of chains whose links add to separate grads (Note [Chains]), from zero
// inner grads (Note [Chains kept inside]): what chains_backward_run<false> computes, each
// chain's links side by side.
MG_WIDER_VECTORS void separate_chains_backward_run(const Arrays& t, const Program::Strides* chain,
                                                   std::size_t begin, std::size_t end,
                                                   std::size_t links) {
    for (std::size_t base = begin; base < end; base += 2 * links, ++chain) {
        // Each sum passes the grad it got on, 0 + g (Rule<Op::add>), to the sum below and to
        // its product: every link gets the top's grad passed once, which passing on again
        // leaves as it is.
        double passed = 0.0, product_grad = 0.0;
        Rule<Op::add>::gradient(0.0, t.grad[base + 2 * links - 1], 0.0, 0.0, 0.0, &passed,
                                &product_grad);
        // The products' rules (Rule<Op::mul>): a.grad += b.data * g, b.grad += a.data * g.
        add_scaled(t.grad + chain->first, t.data + chain->second, product_grad, links);
        add_scaled(t.grad + chain->second, t.data + chain->first, product_grad, links);
        // The first sum's rule adds to its first operand, the chain's start.
        double unused = 0.0;
        Rule<Op::add>::gradient(0.0, passed, 0.0, 0.0, 0.0, &t.grad[t.first[base + 1]], &unused);
    }
}

// The operands of the chains from slot c on in run r: Strided if the run's are, else Indexed.
template <typename F>
void with_operands(const Arrays& t, const Program::Strides* strides, std::uint32_t strided_from,
                   std::size_t begin, std::size_t c, std::size_t span, F f) {
    if (strided_from == Program::not_strided) {
        f(Indexed{t});
    } else {
        f(Strided{strides + strided_from + (c - begin) / span});
    }
}

// A run of chains, four at a time.
template <bool zero_grads, bool store_inside>
void chains_forward_run(const Arrays& t, const Program::Strides* strides,
                        std::uint32_t strided_from, std::size_t begin, std::size_t end,
                        std::size_t links) {
    const std::size_t span = 2 * links;
    std::size_t c = begin;
    for (; c + 4 * span <= end; c += 4 * span) {
        with_operands(t, strides, strided_from, begin, c, span, [&](const auto& operands) {
            chains_forward<zero_grads, store_inside, 4>(t, c, span, links, operands);
        });
    }
    for (; c < end; c += span) {
        with_operands(t, strides, strided_from, begin, c, span, [&](const auto& operands) {
            chains_forward<zero_grads, store_inside, 1>(t, c, span, links, operands);
        });
    }
}

template <bool store_inside>
void chains_backward_run(const Arrays& t, const Program::Strides* strides,
                         std::uint32_t strided_from, std::size_t begin, std::size_t end,
                         std::size_t links) {
    const std::size_t span = 2 * links;
    std::size_t c = end;
    for (; c >= begin + 4 * span; c -= 4 * span) {
        const std::size_t at = c - 4 * span;
        with_operands(t, strides, strided_from, begin, at, span, [&](const auto& operands) {
            chains_backward<store_inside, 4>(t, at, span, links, operands);
        });
    }
    for (; c > begin; c -= span) {
        const std::size_t at = c - span;
        with_operands(t, strides, strided_from, begin, at, span, [&](const auto& operands) {
            chains_backward<store_inside, 1>(t, at, span, links, operands);
        });
    }
}

// Forward over every run; stops at the first that fails. With keep, the runs of chains that
// may keep their inner nodes inside do (Note [Chains kept inside]).
template <bool zero_grads, typename Runs>
Status forward_runs(const Runs& runs, const Program::Strides* strides, const Arrays& t, bool keep) {
    Status status = Status::ok;
    for (const auto& r : runs) {
        if (r.links && keep && r.keeps_inside) {
            chains_forward_run<zero_grads, false>(t, strides, r.strided_from, r.begin, r.end,
                                                  r.links);
            continue;
        }
        if (r.links) {
            chains_forward_run<zero_grads, true>(t, strides, r.strided_from, r.begin, r.end,
                                                 r.links);
            continue;
        }
        run<Forward<zero_grads>::template Pass>(r.op, t, r.begin, r.end, &status);
        if (status != Status::ok) break;
    }
    return status;
}

template <typename Runs>
Status backward_runs(const Runs& runs, const Program::Strides* strides, const Arrays& t,
                     bool keep) {
    Status status = Status::ok;
    for (auto r = runs.rbegin(); r != runs.rend(); ++r) {
        if (r->links && keep && r->keeps_inside && r->separate) {
            separate_chains_backward_run(t, strides + r->strided_from, r->begin, r->end, r->links);
            continue;
        }
        if (r->links && keep && r->keeps_inside) {
            chains_backward_run<false>(t, strides, r->strided_from, r->begin, r->end, r->links);
            continue;
        }
        if (r->links) {
            chains_backward_run<true>(t, strides, r->strided_from, r->begin, r->end, r->links);
            continue;
        }
        run<Backward>(r->op, t, r->begin, r->end, &status);
        if (status != Status::ok) break;
    }
    return status;
}

}  // namespace

Program* Program::compile(Node* root, Node** refused) {
    std::vector<Node*> order;
    topological_order(root, order);
    // Ops and operands by index in `order`: a node comes after its operands, whose marks hold
    // their indices by then. The marks go back to 0 as the program's arrays are filled.
    const std::size_t count = order.size();
    Ops ops(count);
    Indices first(count, 0), second(count, 0);
    MarkedIndices marked(order);
    for (std::size_t i = 0; i < count; ++i) {
        Node* n = order[i];
        if (n->op == Op::custom || (n->flags & has_python_backward)) {
            *refused = n;
            return nullptr;
        }
        n->mark = index_tag | i;
        ops[i] = n->op;
        if (n->op == Op::leaf) continue;
        Node* a = n->operands.pair[0];
        Node* b = is_binary(n->op) ? n->operands.pair[1] : a;
        first[i] = static_cast<std::uint32_t>(a->mark & ~index_tag);
        second[i] = static_cast<std::uint32_t>(b->mark & ~index_tag);
    }

    bool can_fail_somewhere = false;
    for (const Node* n : order) can_fail_somewhere = can_fail_somewhere || can_fail(n);
    // Chains replay as units (Note [Chains]) if that keeps every grad's terms in order, which
    // keeps_micrograds_order() checks of the whole schedule; else the graph replays without.
    Chains chains = find_chains(ops, first, second);
    std::vector<std::uint32_t> levels;
    std::vector<std::uint32_t> rules = rule_order(ops, first, second, chains, levels);
    if (chains.any && !keeps_micrograds_order(ops, first, second, rules)) {
        chains = Chains{};
        rules = rule_order(ops, first, second, chains, levels);
    }
    // Slots: the leaves, then the rules from the last to the first (Note [Slots]).
    std::vector<std::uint32_t> slot(count, unplaced);
    const std::uint32_t leaves = place_leaves(ops, first, second, chains, slot);
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
        n->mark = 0;
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
    marked.reset_from = count;
    if (can_fail_somewhere) {  // room for what a pass overwrites (Note [Failed passes])
        p->can_fail_ = true;
        p->spare_.resize(count);
        for (std::size_t s = leaves; s < count; ++s) {
            if (facts(p->ops_[s]).gradient_can_fail) {
                p->fallible_rules_.push_back(static_cast<std::uint32_t>(s));
            }
        }
    }
    // Runs of one op, and of chains of one length at one level (Note [Chains]), in slot order.
    std::vector<std::uint32_t> chain_at(chains.any ? count : 0, 0);  // links, at a chain's base
    for (std::size_t r = 0; r < rules.size(); ++r) {
        if (chains.any && chains.links[rules[r]]) {
            chain_at[count - 1 - r - (2 * chains.links[rules[r]] - 1)] = chains.links[rules[r]];
        }
    }
    std::uint32_t run_level = 0;
    for (std::size_t s = leaves; s < count;) {
        const std::uint32_t level = levels[count - 1 - s];
        const std::uint32_t links = chains.any ? chain_at[s] : 0;
        const auto at = static_cast<std::uint32_t>(s);
        if (links) {
            if (p->runs_.empty() || p->runs_.back().links != links || run_level != level) {
                p->runs_.push_back({Op::add, at, at, links, false, not_strided});
            }
            s += 2 * std::size_t{links};
        } else {
            if (p->runs_.empty() || p->runs_.back().links || p->runs_.back().op != p->ops_[s]) {
                p->runs_.push_back({p->ops_[s], at, at, 0, false, not_strided});
            }
            ++s;
        }
        p->runs_.back().end = static_cast<std::uint32_t>(s);
        run_level = level;
    }
    // Short runs (a narrow graph, of mixed ops) cost more than they save.
    if (p->runs_.size() * 4 > count - leaves) p->runs_.clear();
    p->find_strides();
    p->list_visible();
    p->grads_read_at_ = inner_grad_writes;
    return p.release();
}

Program::~Program() {
    settle();
    for (Node* n : nodes_) release(n);
}

void Program::settle() {
    if (unsettled != this) return;
    store_inside_chains();
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

void Program::find_strides() {
    for (Run& r : runs_) {
        if (!r.links) continue;
        const std::size_t span = 2 * std::size_t{r.links}, from = strides_.size();
        const auto links = static_cast<std::int64_t>(r.links);
        bool even = true, separate = true;
        for (std::size_t c = r.begin; even && c < r.end; c += span) {
            const auto slot = [](std::uint32_t s) { return static_cast<std::int64_t>(s); };
            const Strides chain{slot(first_[c]), slot(first_[c + 2]) - slot(first_[c]),
                                slot(second_[c]), slot(second_[c + 2]) - slot(second_[c])};
            for (std::size_t k = 0; even && k < r.links; ++k) {
                const auto step = static_cast<std::int64_t>(k);
                even = slot(first_[c + 2 * k]) == chain.first + step * chain.first_step &&
                       slot(second_[c + 2 * k]) == chain.second + step * chain.second_step;
            }
            // Two ranges of consecutive slots, apart from each other and from the start.
            const auto outside = [links](std::int64_t s, std::int64_t range) {
                return s < range || s >= range + links;
            };
            const std::int64_t start = slot(first_[c + 1]);
            separate =
                separate && chain.first_step == 1 && chain.second_step == 1 &&
                (chain.second >= chain.first + links || chain.first >= chain.second + links) &&
                outside(start, chain.first) && outside(start, chain.second);
            strides_.push_back(chain);
        }
        if (even) {
            r.strided_from = static_cast<std::uint32_t>(from);
            r.separate = separate;
        } else {
            strides_.resize(from);
        }
    }
}

void Program::list_visible() {
    visible_.clear();
    for (std::size_t s = 0; s < nodes_.size(); ++s) {
        if (nodes_[s]->handle) visible_.push_back(static_cast<std::uint32_t>(s));
    }
    visible_at_ = exposures;
    // A run of chains keeps its inner nodes inside unless one (not a top) has a Python object.
    // Nothing is kept inside now: a node gets its object only once its program settled.
    std::size_t v = 0;
    for (Run& r : runs_) {
        if (!r.links) continue;
        r.keeps_inside = true;
        while (v < visible_.size() && visible_[v] < r.begin) ++v;
        for (; v < visible_.size() && visible_[v] < r.end; ++v) {
            const std::size_t span = 2 * std::size_t{r.links};
            if ((visible_[v] - r.begin) % span != span - 1) r.keeps_inside = false;
        }
    }
}

void Program::store_inside_chains() {
    store_inside_grads();
    if (!inside_data_waits_) return;
    inside_data_waits_ = false;
    const Arrays arrays{first_.data(), second_.data(), exponent_.data(), data_.data(),
                        grad_.data()};
    for (const Run& r : runs_) {
        if (!r.links || !r.keeps_inside) continue;
        // A forward's kernel storing every node, leaving the grads as they are.
        chains_forward_run<false, true>(arrays, strides_.data(), r.strided_from, r.begin, r.end,
                                        r.links);
    }
}

void Program::store_inside_grads() {
    if (inside_grads_ == InsideGrads::stored) return;
    const bool from_tops = inside_grads_ == InsideGrads::from_tops;
    inside_grads_ = InsideGrads::stored;
    for (const Run& r : runs_) {
        if (!r.links || !r.keeps_inside) continue;
        const std::size_t span = 2 * std::size_t{r.links};
        for (std::size_t c = r.begin; c < r.end; c += span) {
            // What chains_backward computed from zero: each sum's rule passes its grad on.
            double g = grad_[c + span - 1];
            for (std::size_t m = c + span - 2;; m -= 2) {
                double below = 0.0, product = 0.0;
                if (from_tops) Rule<Op::add>::gradient(0.0, g, 0.0, 0.0, 0.0, &below, &product);
                grad_[m] = product;
                if (m == c) break;
                grad_[m - 1] = below;
                g = below;
            }
        }
    }
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
    const bool may_fail = can_fail_;
    double* const out = may_fail ? spare_.data() : data_.data();
    for (std::size_t s = 0; s < leaves_; ++s) {
        out[s] = nodes_[s]->data;
        // Settled, the nodes hold the leaves' grads; unsettled, grad_ does for the hidden ones.
        if (!is_unsettled) grad_[s] = nodes_[s]->grad;
    }
    Status status = Status::ok;
    const Arrays fast{first_.data(), second_.data(), exponent_.data(), out, grad_.data()};
    // Note [Chains kept inside]: the inner nodes of chains without a Python object wait.
    const bool keep_inside = !runs_.empty();
    if (runs_.empty() && may_fail) {
        forward_pass<false>(PerSlot{ops_.data()}, fast, leaves_, count, &status);
    } else if (runs_.empty()) {
        forward_pass<true>(PerSlot{ops_.data()}, fast, leaves_, count, &status);
    } else if (may_fail) {
        status = forward_runs<false>(runs_, strides_.data(), fast, keep_inside);
    } else {
        status = forward_runs<true>(runs_, strides_.data(), fast, keep_inside);
    }
    if (status == Status::ok && may_fail) {
        data_.swap(spare_);
        for (const Run& r : runs_) {  // the inner grads, but those kept inside chains
            if (!r.links || !r.keeps_inside) {
                std::fill(grad_.begin() + r.begin, grad_.begin() + r.end, 0.0);
                continue;
            }
            for (std::size_t top = r.begin + 2 * r.links - 1; top < r.end; top += 2 * r.links) {
                grad_[top] = 0.0;
            }
        }
        if (runs_.empty()) {
            std::fill(grad_.begin() + static_cast<std::ptrdiff_t>(leaves_), grad_.end(), 0.0);
        }
    }
    if (status == Status::ok) {
        inside_data_waits_ = keep_inside;
        inside_grads_ = keep_inside ? InsideGrads::zero : InsideGrads::stored;
    }
    // The made_order_ slots visited before `done` (from leaves_ on) have their new values.
    std::size_t done = leaves_;
    if (status != Status::ok && may_fail) {
        // Rare: redo the pass in the order a rebuild computes, from the values before it.
        list_failure_orders();  // out of memory, nothing has changed
        store_inside_chains();
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
    // A graph that can fail keeps the grads it starts from (Note [Failed passes]).
    // Then a rule fails for certain: out of memory, the orders to redo it in throw before
    // anything has changed.
    const bool may_fail = can_fail_ && a_rule_would_fail();
    if (may_fail) list_failure_orders();
    // Note [Chains kept inside]: from zero, the inner grads of chains wait; else they are stored
    // first, before the grads are read from the nodes (the tops' among them).
    const bool keep_inside = !runs_.empty() && !may_fail && inside_grads_ == InsideGrads::zero;
    if (!keep_inside) store_inside_grads();
    // Start from the nodes' grads. Those with a Python object may have been set since (zero_grad
    // on the parameters); the others only by something that walked the graph, which counted
    // in inner_grad_writes, unless grad_ holds them (unsettled).
    if (!is_unsettled && grads_read_at_ != inner_grad_writes) {
        for (std::size_t s = 0; s < count; ++s) grad_[s] = nodes_[s]->grad;
    } else {
        for (std::uint32_t s : visible_) grad_[s] = nodes_[s]->grad;
    }
    grad_[count - 1] = 1.0;  // the root
    if (may_fail) std::copy(grad_.begin(), grad_.end(), spare_.begin());
    Status status = Status::ok;
    const Arrays arrays{first_.data(), second_.data(), exponent_.data(), data_.data(),
                        grad_.data()};
    if (runs_.empty()) {
        backward_pass(PerSlot{ops_.data()}, arrays, leaves_, count, &status);
    } else {
        status = backward_runs(runs_, strides_.data(), arrays, keep_inside);
    }
    if (keep_inside) inside_grads_ = InsideGrads::from_tops;
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

void Program::list_failure_orders() {
    if (!micrograd_order_.empty()) return;
    std::vector<std::uint32_t> topological = topological_slots(first_, second_, leaves_);
    std::vector<std::uint32_t> made = creation_order(nodes_, first_, second_, leaves_, topological);
    made_order_ = made.empty() ? topological : std::move(made);
    micrograd_order_.swap(topological);
}

bool Program::a_rule_would_fail() const {
    for (const std::uint32_t s : fallible_rules_) {
        // Whether a rule fails does not depend on the grad it passes on (Rule::gradient).
        double scratch = 0.0;
        if (accumulate_gradient(ops_[s], data_[s], 1.0, exponent_[s], data_[first_[s]],
                                data_[second_[s]], &scratch, &scratch) != Status::ok) {
            return true;
        }
    }
    return false;
}

void Program::zero_grad() {
    begin_pass();
    std::fill(grad_.begin(), grad_.end(), 0.0);
    inside_grads_ = InsideGrads::stored;
    for (std::uint32_t s : visible_) nodes_[s]->grad = 0.0;
    defer(false);
}

}  // namespace mg
