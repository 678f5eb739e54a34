// Entry points of the bfloat16 convolution beyond the registered op, for the Python module's test hooks.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "tile_pairs_cpu.h"

namespace pointengine {

// Portable: scalar fmaf steps; AVX512_BF16: vdpbf16ps, the same bits (conv_tile_bf16.h); AMX:
// tdpbf16ps, which rounds its own way (conv_tile_amx_bf16.cpp).
enum class Bf16Path { kPortable, kAvx512Bf16, kAmx };

// The paths this CPU runs, portable first, by name ("portable", "avx512_bf16", "amx"); the path of a name,
// refused (TORCH_CHECK) when unknown or beyond this CPU.
std::vector<std::string> bf16_paths();
Bf16Path bf16_path_named(const std::string& name);

// The conv_bf16 op on a given path.
at::Tensor conv_bf16_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                          const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual, bool relu,
                          bool bf16_out, Bf16Path path, const TileListArgs& tiles = {});

}  // namespace pointengine
