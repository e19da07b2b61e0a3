// spread_reach_outside(): which live nodes are above one that may refer outside the graph (Note
// [Cycle collection] in the binding). Kept apart from the engine's own walks, which run on every
// step, while this one runs when a user's Value first refers outside the graph.
#include <vector>

#include "engine.hpp"
#include "node_pool.hpp"

namespace mg {

namespace {

struct Pending {  // a node being walked and its next child
    Node* node;
    std::uint32_t next_child;
};

std::vector<Node*>* live_nodes = nullptr;  // filled by for_each_node for spread_reach_outside
void collect_live(Node* n) { live_nodes->push_back(n); }

// Depth first from each live node, children before parents as in topological_order_with: a
// node whose children are all done is marked if one of them is. Visits are flagged in the
// nodes rather than with `mark`, which the teardown's `dying` list may be using if a __del__
// runs this.
void spread_over(const std::vector<Node*>& nodes, std::vector<Pending>& stack,
                 void (*newly_marked)(Node*)) {
    for (Node* root : nodes) {
        if (root->flags & spread_visited) continue;
        root->flags |= spread_visited;
        Node* n = root;
        std::uint32_t next = 0;
        for (;;) {
            const std::uint32_t count = child_count(n);
            Node* const* kids = children(n);
            if (next < count) {
                Node* k = kids[next++];
                if (k->flags & spread_visited) continue;  // done: the graph has no cycle
                k->flags |= spread_visited;
                stack.push_back({n, next});
                n = k;
                next = 0;
                continue;
            }
            if (!(n->flags & may_reach_outside)) {
                for (std::uint32_t i = 0; i < count; ++i) {
                    if (kids[i]->flags & may_reach_outside) {
                        n->flags |= may_reach_outside;
                        newly_marked(n);
                        break;
                    }
                }
            }
            if (stack.empty()) break;
            n = stack.back().node;
            next = stack.back().next_child;
            stack.pop_back();
        }
    }
}

}  // namespace

void spread_reach_outside(void (*newly_marked)(Node*)) {
    std::vector<Node*> nodes;
    std::vector<Pending> stack;
    live_nodes = &nodes;
    try {
        for_each_node(collect_live);
        spread_over(nodes, stack, newly_marked);
    } catch (...) {
        live_nodes = nullptr;
        for (Node* n : nodes) n->flags &= static_cast<std::uint8_t>(~spread_visited);
        throw;
    }
    live_nodes = nullptr;
    for (Node* n : nodes) n->flags &= static_cast<std::uint8_t>(~spread_visited);
}

}  // namespace mg
