// Entry point of the trilinear gather beyond the registered op, for the Python module's helpers.
#pragma once
#include <ATen/ATen.h>

namespace pointengine {

// The trilinear_gather op; allow_avx2 = false forces the portable path (tests cover both paths).
at::Tensor trilinear_gather_path(const at::Tensor& feats, const at::Tensor& index, const at::Tensor& weights,
                                 const c10::optional<at::Tensor>& base, bool allow_avx2);

}  // namespace pointengine
