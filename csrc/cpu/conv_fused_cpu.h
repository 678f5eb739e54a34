// Entry points of the fused convolution beyond the registered op, for the Python module's helpers.
#pragma once
#include <ATen/ATen.h>

namespace pointengine {

// The conv_fused op; allow_avx2 = false forces the portable path (tests cover both paths).
at::Tensor conv_fused_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, bool allow_avx2);

// The conv_fused_epilogue op, with the same choice of path.
at::Tensor conv_fused_epilogue_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                    bool relu, bool allow_avx2);

// "avx2+fma" or "portable": the path float32 conv_fused takes on this CPU.
const char* conv_fused_isa();

}  // namespace pointengine
