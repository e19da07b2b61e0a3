#include "program.hpp"

#include "rules.hpp"

namespace mg {

namespace {

// While compiling, a node's mark holds its index with this bit set. Traversal marks count up
// from 1 and never reach it, and compile() resets the marks to 0 (never a traversal's) after.
constexpr std::uint64_t index_tag = std::uint64_t{1} << 63;

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

    auto* p = new Program();
    const std::size_t count = order.size();
    p->ops_.resize(count);
    p->first_.assign(count, 0);
    p->second_.assign(count, 0);
    p->exponent_.assign(count, 0.0);
    p->data_.resize(count);
    p->grad_.resize(count);
    for (std::size_t i = 0; i < count; ++i) order[i]->mark = index_tag | i;
    for (std::size_t i = 0; i < count; ++i) {
        Node* n = order[i];
        retain(n);
        p->ops_[i] = n->op;
        p->data_[i] = n->data;
        p->grad_[i] = n->grad;
        if (n->op == Op::leaf) {
            p->leaves_.push_back(static_cast<std::uint32_t>(i));
            continue;
        }
        Node* a = n->operands.pair[0];
        Node* b = is_binary(n->op) ? n->operands.pair[1] : a;
        p->first_[i] = static_cast<std::uint32_t>(a->mark & ~index_tag);
        p->second_[i] = static_cast<std::uint32_t>(b->mark & ~index_tag);
        if (n->op == Op::pow) p->exponent_[i] = n->operands.pow.exponent;
    }
    for (Node* n : order) n->mark = 0;
    p->nodes_ = std::move(order);
    p->grads_read_at_ = inner_grad_writes;
    return p;
}

Program::~Program() {
    for (Node* n : nodes_) release(n);
}

Status Program::forward(std::size_t* failed) {
    for (std::uint32_t i : leaves_) data_[i] = nodes_[i]->data;
    const std::size_t count = nodes_.size();
    Status status = Status::ok;
    std::size_t i = 0;
    for (; i < count; ++i) {
        const Op op = ops_[i];
        if (op == Op::leaf) continue;
        status = forward_value(op, data_[first_[i]], data_[second_[i]], exponent_[i], &data_[i]);
        if (status != Status::ok) break;
    }
    // The nodes show the new values; as in a rebuilt graph, their grads start from zero.
    for (std::size_t j = 0; j < i; ++j) {
        Node* n = nodes_[j];
        n->data = data_[j];
        if (ops_[j] != Op::leaf) n->grad = grad_[j] = 0.0;
    }
    // Other programs over these nodes must re-read their grads; this one stays in step with
    // the nodes only if it was before (a grad set by hand past a failure is not in grad_).
    const bool in_step = grads_read_at_ == inner_grad_writes;
    ++inner_grad_writes;
    if (in_step) grads_read_at_ = inner_grad_writes;
    if (status != Status::ok) *failed = i;
    return status;
}

Status Program::backward(std::size_t* failed) {
    const std::size_t count = nodes_.size();
    // Start from the nodes' grads. Only leaves' change between passes (zero_grad), unless
    // something else wrote an inner node's grad since the program last stored them.
    if (grads_read_at_ != inner_grad_writes) {
        for (std::size_t j = 0; j < count; ++j) grad_[j] = nodes_[j]->grad;
        grads_read_at_ = inner_grad_writes;
    } else {
        for (std::uint32_t j : leaves_) grad_[j] = nodes_[j]->grad;
    }
    grad_[count - 1] = 1.0;
    Status status = Status::ok;
    std::size_t i = count;
    while (i-- > 0) {
        const std::uint32_t a = first_[i], b = second_[i];
        status = accumulate_gradient(ops_[i], data_[i], grad_[i], exponent_[i], data_[a], data_[b],
                                     &grad_[a], &grad_[b]);
        if (status != Status::ok) {
            *failed = i;
            break;
        }
    }
    for (std::size_t j = 0; j < count; ++j) nodes_[j]->grad = grad_[j];
    grads_read_at_ = ++inner_grad_writes;
    return status;
}

void Program::zero_grad() {
    for (std::size_t j = 0; j < nodes_.size(); ++j) nodes_[j]->grad = grad_[j] = 0.0;
    grads_read_at_ = ++inner_grad_writes;
}

}  // namespace mg
