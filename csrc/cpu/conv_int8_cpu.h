// Entry points of the int8 convolution beyond the registered op, for the Python module's test hooks.
#pragma once
#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "conv_int8_tile.h"
#include "tile_pairs_cpu.h"

namespace pointengine {

// The paths this CPU runs, portable first; a path's name ("portable", "avx2", "avx512_vnni"); the path
// of a name, refused (TORCH_CHECK) when unknown or beyond this CPU.
std::vector<Int8Path> int8_paths();
const char* int8_path_name(Int8Path path);
Int8Path int8_path_named(const std::string& name);

// The conv_int8 op on a given path (tests cover every path the CPU has).
at::Tensor conv_int8_path(const at::Tensor& q_feats, double in_scale, int64_t in_zero, const at::Tensor& weight,
                          const at::Tensor& weight_scale, const at::Tensor& nbr, const c10::optional<at::Tensor>& bias,
                          const c10::optional<at::Tensor>& residual, bool relu, c10::optional<double> out_scale,
                          int64_t out_zero, Int8Path path, const TileListArgs& tiles = {});

}  // namespace pointengine
