// Trilinear devoxelization table on the CPU: one thread block of points after another fills each
// point's 8 (row, weight) entries (common/trilinear_corners.h says how).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>

#include "../common/checks.h"
#include "../common/trilinear_corners.h"

namespace pointengine {
namespace {

std::tuple<at::Tensor, at::Tensor> trilinear_table_cpu(const at::Tensor& keys_in, const at::Tensor& vals_in,
                                                       const at::Tensor& corners_in, const at::Tensor& coords_in,
                                                       at::IntArrayRef stride, bool nearest) {
  const char* op = "trilinear_table";
  check_table(keys_in, vals_in, op);
  check_matrix(corners_in, op, "corners", at::kInt, kCorners, "[M, 8]");
  check_float_matrix(coords_in, op, "coords", "[N, 4] (batch, x, y, z)");
  TORCH_CHECK(coords_in.size(1) == 4, op, ": coords must have shape [N, 4] (batch, x, y, z), got ", coords_in.sizes());
  check_strides(stride, op);
  const at::Tensor keys = keys_in.contiguous(), vals = vals_in.contiguous();
  check_empty_slot(keys, op);
  const at::Tensor coords = coords_in.contiguous(), corners = corners_in.contiguous();
  const int64_t n = coords.size(0);
  const int64_t s[3] = {stride[0], stride[1], stride[2]};
  const Sites sites{{keys.data_ptr<int64_t>(), vals.data_ptr<int32_t>(), uint64_t(keys.size(0) - 1)},
                    corners.data_ptr<int32_t>(), corners.size(0)};
  at::Tensor idx = at::empty({n, kCorners}, coords.options().dtype(at::kInt));
  at::Tensor weights = at::empty({n, kCorners}, coords.options());
  std::atomic<int64_t> bad{0};
  AT_DISPATCH_FLOATING_TYPES(coords.scalar_type(), "trilinear_table_cpu", [&] {
    const scalar_t* c = coords.data_ptr<scalar_t>();
    int32_t* ix = idx.data_ptr<int32_t>();
    scalar_t* w = weights.data_ptr<scalar_t>();
    at::parallel_for(0, n, 2048, [&](int64_t begin, int64_t end) {
      int64_t local = 0;
      for (int64_t i = begin; i < end; ++i)
        local += !point_corners(c + 4 * i, s, sites, nearest, ix + kCorners * i, w + kCorners * i);
      bad += local;
    });
  });
  TORCH_CHECK(bad.load() == 0, "trilinear_table: ", bad.load(), " coords rows have a non-finite value, a batch that ",
              "is not an integer in [0, ", kBatchMax, "], or a site whose table row is past the corners rows");
  return {idx, weights};
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("trilinear_table", &trilinear_table_cpu); }

}  // namespace pointengine
