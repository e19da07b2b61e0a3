// Optimizer steps over parameter nodes: torch.optim's SGD and AdamW, with exactly the float
// operations, in the same order, of the Python loops in micrograd_cpp/optim.py.
#pragma once

#include <cstddef>

#include "engine.hpp"

namespace mg {

struct SgdSettings {
    double lr, momentum, weight_decay;
};

// One SGD step; `momentum_buffers` has one entry per parameter. `step` counts from 1.
void sgd_step(Node* const* params, double* momentum_buffers, std::size_t count, long step,
              const SgdSettings& settings);

struct AdamWSettings {
    double lr, beta1, beta2, eps, weight_decay;
};

// One AdamW step. Fails where Python's float arithmetic raises (a zero division, the square
// root of a negative second moment, an overflowing power); then the parameters before the
// failing one are updated, as a Python loop would have left them.
Status adamw_step(Node* const* params, double* first_moments, double* second_moments,
                  std::size_t count, long step, const AdamWSettings& settings);

}  // namespace mg
