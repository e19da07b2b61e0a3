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

#include "deferred_stores.hpp"
#include "engine.hpp"

namespace mg {

class Program final : public DeferredStores {
  public:
    // Freezes the graph under root. Returns null, and the offending node in *refused, if the graph
    // holds a node whose forward the engine cannot recompute (a custom op made from Python).
    static Program* compile(Node* root, Node** refused);
    ~Program();
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    // Recomputes every non-leaf node from the leaves' current data and stores the results in the
    // nodes; their grads restart at zero, as in a rebuilt graph. It fails where a rebuild would:
    // at the first failing node in the order the nodes were made (Note [Creation order]), and
    // the nodes made before it hold their new values.
    Status forward();
    // root.backward() over the frozen graph: the nodes' current grads, root grad 1, local rules
    // on the values of the last forward (or of compile time). On a failure the grads accumulated
    // so far are stored, as root.backward() would leave them.
    Status backward();
    // Sets every grad in the program, leaves included, to zero.
    void zero_grad();
    // Stores the results deferred to the nodes without a Python object (Note [Deferred stores]).
    void settle() override;

    // The operand slots of a chain's products that step evenly: first + k * first_step for
    // link k, and the same for the second operands (Note [Chains]).
    struct Strides {
        std::int64_t first, first_step, second, second_step;
    };
    static constexpr std::uint32_t not_strided = ~std::uint32_t{0};

    std::size_t size() const { return nodes_.size(); }
    Node* root() const { return nodes_.back(); }
    // The runs (of one op, or of chains: Note [Chains]) the passes loop over (Note [Slots]); 0
    // if replayed node by node.
    std::size_t runs() const { return runs_.size(); }

  private:
    Program() = default;
    // Settles any other program and lists the nodes that have a Python object.
    void begin_pass();
    // Lists the slots of the nodes that have a Python object.
    void list_visible();
    // Finds the runs of chains whose products' operands step evenly (Strides).
    void find_strides();
    // After a pass that succeeded: results not stored yet wait for settle().
    void defer(bool holding_data);
    // Marks a pass's grad writes, keeping this program in step if it was.
    void count_grad_writes();
    // Lists made_order_ and micrograd_order_ unless listed before (Note [Failed passes]).
    void list_failure_orders();
    // Whether a rule would fail on the values in data_ (Note [Failed passes]).
    bool a_rule_would_fail() const;
    // Stores what chains kept inside (Note [Chains kept inside]): their inner data and grads,
    // or the grads alone.
    void store_inside_chains();
    void store_inside_grads();

    // Note [Slots]
    // Each node has a slot in these arrays: the leaves first, then the other nodes in the order
    // forward computes them, the root last; backward applies the rules from the last slot down.
    // micrograd's backward visits nodes in reverse topological order, but any order gives the
    // very same grads as long as a node's rule runs after all its parents' and every grad
    // receives its terms in micrograd's order. So compile() orders the rules by level (the
    // longest chain of such constraints above them) and, within a level, by op: the slots form
    // runs of one op, each replayed by a loop with no branch on the op, and the rules of a level
    // are independent, so no sum waits on the one before it. When the runs are short (a narrow
    // graph) it is replayed node by node instead (runs_ empty).
    //
    // Note [Chains]
    // nn's neurons and ops.dot make sums of products: s1 = b + w1*x1, s2 = s1 + w2*x2, and so
    // on, each partial sum and product read by the next sum alone. Level by level, such a sum
    // waits on the one before it and its operands come from a run far away. So compile() takes
    // a chain of 4 links or more as one unit: at the level of its top sum, its rules all
    // together, each sum then its product, as micrograd orders them; its nodes in consecutive
    // slots (products at base + 2k, sums at base + 2k + 1); and the partial sum in a register.
    // A unit adds to the operands of its products and to its first sum's first operand, so it
    // takes the level above all those operands' last writers; units of one level share no
    // operand, and runs of chains of one length at one level interleave four at a time. Moving
    // a chain's rules to its top's place could reorder a grad's terms if another rule came
    // between them in micrograd's order; compile() checks the whole schedule against
    // micrograd's order of terms for every grad and compiles without chains if any differs.
    // Where the operands of every chain's products in a run step evenly through the slots (a
    // layer's weights and inputs, laid out in the order its chains first read them), the run
    // computes their slots instead of loading them (Strides). Where, besides, each chain's first
    // operands and its second ones fill two ranges of consecutive slots, apart from each other and
    // from its first sum's first operand, no two of its links' rules add to the same grad, so the
    // order of those rules changes nothing: a backward from zero inner grads (Note [Chains kept
    // inside]) runs them side by side (`separate`), the same additions in vector registers, each
    // product's grad the top's passed down (0 + g, which passing on again leaves as it is).
    //
    // Note [Leaf layout]
    // The leaves come first in the slots, in the order the chains' products first read them:
    // chain by chain in topological order, its products' first operands bottom up, then their
    // second ones; the other leaves after, in topological order. A layer's weights and a
    // sample's inputs thus lie in consecutive slots in the order its chains read them, which
    // the two forms above need. Where a leaf lies changes no result.
    //
    // Note [Failed passes]
    // A graph with a node that can fail ('**', exp, log, or a tanh whose value squared
    // overflows: can_fail()) replays in the same order, but a failure must leave exactly what
    // the rebuilt graph would: the same exception from the same node, the nodes computed before
    // it in micrograd's order updated, the others unchanged. So each pass keeps what it
    // overwrites: forward computes into spare_ (swapped with data_ when it succeeds; the inner
    // grads are reset only then), backward first copies grad_ into spare_, unless none of the
    // rules that can fail (fallible_rules_) would on the values it reads. A pass that fails
    // stops, and is redone from the kept values node by node in micrograd's order: forward in
    // the order the nodes were made (made_order_, Note [Creation order]), backward in reverse
    // topological order (micrograd_order_ from its end); both are listed when a pass first
    // fails, from the frozen operand slots and the nodes' stamps (which never change), so that
    // a graph that never fails does not pay for them. The redo fails at the node a rebuild
    // fails at, and stores the nodes' results as before. The first pass writes only the
    // program's arrays, never the nodes, so only the redo's results reach them.
    std::vector<Node*> nodes_;  // each retained by the program
    std::vector<Op> ops_;
    std::vector<std::uint32_t> first_, second_;  // operand slots
    std::vector<double> exponent_;               // of '**' nodes
    std::vector<double> data_, grad_;
    std::size_t leaves_ = 0;  // the number of leaves
    struct Run {  // slots [begin, end) of one op, or of chains of `links` links (if not 0)
        Op op;
        std::uint32_t begin, end;
        std::uint32_t links;
        bool keeps_inside;  // chains that may keep their inner nodes (Note [Chains kept inside])
        std::uint32_t strided_from;  // its chains' Strides in strides_, or not_strided
        bool separate = false;       // its chains' links add to separate grads (Note [Chains])
    };
    std::vector<Strides> strides_;
    std::vector<Run> runs_;
    // If the graph can fail (Note [Failed passes]): room for the values a pass overwrites; once
    // a pass failed, its non-leaf slots in the order their nodes were made (or topological, if
    // the graph's stamps do not tell: Note [Creation order]) and in topological order. Else
    // all empty.
    bool can_fail_ = false;
    std::vector<std::uint32_t> made_order_, micrograd_order_;
    std::vector<std::uint32_t> fallible_rules_;  // slots whose op's gradient can fail
    std::vector<double> spare_;
    // Note [Chains kept inside]
    // Only its chain reads a chain's inner nodes (all but its top), and it reads them from
    // registers, so the passes need not store them: a forward stores each chain's top alone,
    // and a backward from inner grads at zero (after a forward) passes the grad down the chain
    // in registers and adds only to the chain's operands. What the inner nodes hold is then a
    // function of what is stored: their data of the chains' operands in data_ (unchanged until
    // the next forward), their grads zero, or what the chain passed on from its top's grad in
    // grad_ (unchanged until the next pass). store_inside_chains() computes and stores them,
    // with the chain kernels' very operations, before anything reads them: settle(), a forward
    // that fails (before its redo), a backward that does not start from zero or may fail.
    // A run of chains with an inner node that has a Python object stores everything.
    enum class InsideGrads : std::uint8_t { stored, zero, from_tops };
    bool inside_data_waits_ = false;
    InsideGrads inside_grads_ = InsideGrads::stored;
    std::vector<std::uint32_t> visible_;  // slots of nodes with a Python object, stored at once
    std::uint64_t visible_at_ = 0;        // `exposures` when visible_ was listed
    std::uint64_t grads_read_at_ = 0;     // inner_grad_writes when grad_ last matched the nodes
    // While unsettled: whether the nodes without a Python object take their data from data_
    // (a forward ran) or only their grads from grad_.
    bool holding_data_ = false;
};

}  // namespace mg
