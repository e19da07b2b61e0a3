#include "optim.hpp"

#include <cmath>

namespace mg {

void sgd_step(Node* const* params, double* momentum_buffers, std::size_t count, long step,
              const SgdSettings& s) {
    for (std::size_t i = 0; i < count; ++i) {
        Node* p = params[i];
        double g = p->grad;
        if (s.weight_decay != 0) g = g + s.weight_decay * p->data;
        if (s.momentum != 0) {
            g = step == 1 ? g : momentum_buffers[i] * s.momentum + g;
            momentum_buffers[i] = g;
        }
        p->data = p->data - s.lr * g;
    }
}

Status adamw_step(Node* const* params, double* m, double* v, std::size_t count, long step,
                  const AdamWSettings& s) {
    const double t = static_cast<double>(step);
    double beta1_t, beta2_t, correction2_sqrt;
    Status status = py_pow(s.beta1, t, &beta1_t);
    if (status != Status::ok) return status;
    if (1 - beta1_t == 0) return Status::division_by_zero;
    const double step_size = s.lr / (1 - beta1_t);
    status = py_pow(s.beta2, t, &beta2_t);
    if (status == Status::ok) status = py_pow(1 - beta2_t, 0.5, &correction2_sqrt);
    if (status != Status::ok) return status;
    const double decay = 1 - s.lr * s.weight_decay;
    const double w = 1 - s.beta1;

    for (std::size_t i = 0; i < count; ++i) {
        Node* p = params[i];
        const double g = p->grad;
        if (s.weight_decay != 0) p->data = p->data * decay;
        // torch's lerp switches formula at weight 0.5 for accuracy
        m[i] = std::fabs(w) < 0.5 ? m[i] + w * (g - m[i]) : g - (g - m[i]) * (1 - w);
        v[i] = v[i] * s.beta2 + (1 - s.beta2) * g * g;
        if (v[i] < 0) return Status::math_domain_error;  // math.sqrt
        if (correction2_sqrt == 0) return Status::division_by_zero;
        const double denom = std::sqrt(v[i]) / correction2_sqrt + s.eps;
        if (denom == 0) return Status::division_by_zero;
        p->data = p->data + -step_size * m[i] / denom;
    }
    return Status::ok;
}

}  // namespace mg
