// Entry point of the deterministic dense product beyond the registered op, for the module's helpers.
#pragma once
#include <ATen/ATen.h>

namespace pointengine {

// The linear op; allow_avx2 = false forces the portable path (tests cover both paths).
at::Tensor linear_path(const at::Tensor& input, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                       bool allow_avx2);

}  // namespace pointengine
