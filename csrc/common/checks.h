// The backstop checks of the raw ops (torch.ops.pointengine.*, which anyone can call): every
// failure is a RuntimeError that names the op and the argument. The Python entry points validate
// first, with friendlier messages; these keep a bad direct call from reading outside a buffer,
// looping or overflowing.
#pragma once
#include <ATen/ATen.h>

#include <cstdint>
#include <limits>
#include <string>

#include "hash_table.h"
#include "keys.h"

namespace pointengine {

// A dtype as Python spells it ("torch.int32"), as the messages of the Python checks do.
inline std::string dtype_name(at::ScalarType dtype) {
  return "torch." + std::string(c10::getDtypeNames(dtype).first);
}

// Where a kernel reads raw pointers: a tensor of one dtype on the kernel's device type (the CPU
// kernels' by default; the CUDA kernels pass at::kCUDA).
inline void check_kernel_tensor(const at::Tensor& t, const char* op, const char* arg, at::ScalarType dtype,
                                c10::DeviceType device = at::kCPU) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  TORCH_CHECK(t.device().type() == device, op, ": ", arg, " must be a ", c10::DeviceTypeName(device),
              " tensor, got one on ", t.device());
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", arg, " must have dtype ", dtype_name(dtype), ", got ",
              dtype_name(t.scalar_type()));
}

// A matrix of one dtype with `columns` columns (< 0: any number); `layout` names the shape.
inline void check_matrix(const at::Tensor& t, const char* op, const char* arg, at::ScalarType dtype,
                         int64_t columns, const char* layout, c10::DeviceType device = at::kCPU) {
  check_kernel_tensor(t, op, arg, dtype, device);
  TORCH_CHECK(t.dim() == 2 && (columns < 0 || t.size(1) == columns), op, ": ", arg, " must have shape ", layout,
              ", got ", t.sizes());
}

// A CPU float32 or float64 matrix (the dtypes the tile kernels compute in).
inline void check_float_matrix(const at::Tensor& t, const char* op, const char* arg, const char* layout) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " is an undefined tensor");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", arg,
              " must be float32 or float64, got ", dtype_name(t.scalar_type()));
  check_matrix(t, op, arg, t.scalar_type(), -1, layout);
}

// Row indices are stored as int32: a tensor with more rows could not be indexed.
inline void check_row_count(int64_t rows, const char* op, const char* arg) {
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), op, ": ", arg, " has ", rows,
              " rows, more than int32 row indices reach (", std::numeric_limits<int32_t>::max(), ")");
}

// A hash table as hash_build makes it: keys int64[cap], vals int32[cap], cap a power of two (the
// probe sequence masks with cap - 1). The contents need not be trusted: see check_empty_slot.
// The weight [K, C_in, C_out] and neighbour table [N_out, K] of a fused convolution on feats
// [N_in, C_in] (whose dtype the caller checked): the weight in the feats' dtype, shapes that agree.
inline void check_conv_operands(const at::Tensor& feats, const at::Tensor& weight, const at::Tensor& nbr, const char* op) {
  check_kernel_tensor(weight, op, "weight", feats.scalar_type());
  check_matrix(nbr, op, "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(feats.size(0), op, "feats");
  TORCH_CHECK(weight.dim() == 3 && weight.size(1) == feats.size(1) && weight.size(0) == nbr.size(1), op,
              ": weight must have shape [K, C_in, C_out] = [", nbr.size(1), ", ", feats.size(1),
              ", C_out] (nbr columns, feats columns), got ", weight.sizes());
}

// A convolution epilogue's optional bias [C_out] and residual [N_out, C_out] of `dtype`, contiguous;
// an undefined tensor where absent.
inline at::Tensor checked_bias(const c10::optional<at::Tensor>& bias, const char* op, at::ScalarType dtype,
                               int64_t c_out) {
  if (!bias.has_value()) return at::Tensor();
  check_kernel_tensor(*bias, op, "bias", dtype);
  TORCH_CHECK(bias->dim() == 1 && bias->size(0) == c_out, op, ": bias must have shape [", c_out, "] (C_out), got ",
              bias->sizes());
  return bias->contiguous();
}

inline at::Tensor checked_residual(const c10::optional<at::Tensor>& residual, const char* op, at::ScalarType dtype,
                                   int64_t n_out, int64_t c_out) {
  if (!residual.has_value()) return at::Tensor();
  check_kernel_tensor(*residual, op, "residual", dtype);
  TORCH_CHECK(residual->dim() == 2 && residual->size(0) == n_out && residual->size(1) == c_out, op,
              ": residual must have shape [", n_out, ", ", c_out, "] (nbr rows, C_out), got ", residual->sizes());
  return residual->contiguous();
}

inline void check_table(const at::Tensor& keys, const at::Tensor& vals, const char* op,
                        c10::DeviceType device = at::kCPU) {
  check_kernel_tensor(keys, op, "keys", at::kLong, device);
  check_kernel_tensor(vals, op, "vals", at::kInt, device);
  TORCH_CHECK(keys.dim() == 1 && vals.dim() == 1 && keys.size(0) == vals.size(0), op,
              ": keys and vals must be 1-D of one length, got ", keys.sizes(), " and ", vals.sizes());
  const int64_t cap = keys.size(0);
  TORCH_CHECK(cap > 0 && (cap & (cap - 1)) == 0, op,
              ": the table length (keys, vals) must be a power of two, as hash_build makes it, got ", cap);
}

// After check_table, on the contiguous keys: the empty slot that ends every lookup (hash_table.h).
inline void check_empty_slot(const at::Tensor& keys, const char* op) {
  TORCH_CHECK(has_empty_slot(keys.data_ptr<int64_t>(), keys.size(0)), op,
              ": the table (keys, vals) has no empty slot (key -1), so a lookup of a missing key would never end; "
              "hash_build leaves at least half of the slots empty");
}

// Strides of a kernel map: one per axis, in [1, kMaxGeometry].
inline void check_strides(at::IntArrayRef stride, const char* op) {
  TORCH_CHECK(stride.size() == 3, op, ": stride must have 3 values, got ", stride.size());
  for (const int64_t s : stride)
    TORCH_CHECK(s >= 1 && s <= kMaxGeometry, op, ": stride must be in [1, ", kMaxGeometry, "], got ", stride);
}

// The corner table of a point-voxel op: index int32 [N, 8] and weights [N, 8] of `dtype`, with
// N = `rows` (the points; < 0: as many as index has).
inline void check_point_corners(const at::Tensor& index, const at::Tensor& weights, int64_t rows,
                                at::ScalarType dtype, const char* op, c10::DeviceType device = at::kCPU) {
  check_matrix(index, op, "index", at::kInt, 8, "[N, 8]", device);
  check_matrix(weights, op, "weights", dtype, 8, "[N, 8]", device);
  const int64_t n = rows < 0 ? index.size(0) : rows;
  TORCH_CHECK(index.size(0) == n && weights.size(0) == n, op, ": index and weights must have one row per point (",
              n, "), got ", index.sizes(), " and ", weights.sizes());
}

}  // namespace pointengine
