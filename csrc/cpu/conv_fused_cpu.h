// Entry points of the fused convolution beyond the registered op, for the Python module's helpers.
#pragma once
#include <ATen/ATen.h>

#include <string>

#include "tile_pairs_cpu.h"

namespace pointengine {

// The float32 kernels, in the order the fused convolution prefers them; float64 is always portable.
enum class CpuPath { kPortable, kAvx2, kAvx512 };

// The best path this CPU runs; its name ("portable", "avx2", "avx512"); the path of a name, refused
// (TORCH_CHECK) when unknown or beyond this CPU.
CpuPath best_cpu_path();
const char* cpu_path_name(CpuPath path);
CpuPath cpu_path_named(const std::string& name);

// The path the registered float32 ops take for a result of c_out columns: the best this CPU runs,
// except AVX2 for AVX-512 at 8 or fewer columns (see conv_fused_cpu.cpp).
CpuPath preferred_cpu_path(int64_t c_out);

// The conv_fused op on a given path (tests cover every path the CPU has).
at::Tensor conv_fused_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, CpuPath path,
                           const TileListArgs& tiles = {});

// The conv_fused_epilogue op, with the same choice of path.
at::Tensor conv_fused_epilogue_path(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr,
                                    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& residual,
                                    bool relu, CpuPath path, const TileListArgs& tiles = {});

// FLOP/s of float32 fused multiply-adds in registers on every torch thread, on best_cpu_path(), over
// about `seconds` (fma_peak_cpu.cpp).
double fma_peak_flops(double seconds);

// The name of the path float32 conv_fused takes on this CPU.
const char* conv_fused_isa();

}  // namespace pointengine
