// Gradient of trilinear_gather with respect to the voxel features:
// grad_feats[v] = sum over the entries (i, j) with index[i, j] = v of weights[i, j] * grad_out[i].
// Output-stationary: the 8N entries are grouped per voxel by a stable counting sort (point order,
// then corner order), and each voxel sums its entries in that order: no atomics, the same bits for
// any thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/checks.h"
#include "../common/point_rows.h"

namespace pointengine {
namespace {

template <typename scalar_t>
void scatter(const scalar_t* grad_out, const scalar_t* weights, const Groups& groups, int64_t n_voxels, int64_t c,
             scalar_t* out) {
  at::parallel_for(0, n_voxels, 256, [&](int64_t begin, int64_t end) {
    for (int64_t v = begin; v < end; ++v) {
      scalar_t* o = out + v * c;
      std::fill(o, o + c, scalar_t(0));
      for (int64_t k = groups.ptr[v]; k < groups.ptr[v + 1]; ++k) {
        const int64_t e = groups.order[k];
        const scalar_t w = weights[e];
        if (w == scalar_t(0)) continue;
        const scalar_t* g = grad_out + (e / 8) * c;
        for (int64_t ch = 0; ch < c; ++ch) o[ch] += w * g[ch];
      }
    }
  });
}

at::Tensor trilinear_gather_backward_cpu(const at::Tensor& grad_in, const at::Tensor& index_in,
                                         const at::Tensor& weights_in, int64_t n_voxels) {
  const char* op = "trilinear_gather_backward";
  check_float_matrix(grad_in, op, "grad_out", "[N, C]");
  check_point_corners(index_in, weights_in, grad_in.size(0), grad_in.scalar_type(), op);
  TORCH_CHECK(n_voxels >= 0 && n_voxels <= INT32_MAX, op, ": n_voxels must be in [0, ", INT32_MAX, "], got ",
              n_voxels);
  const at::Tensor grad = grad_in.contiguous(), index = index_in.contiguous(), weights = weights_in.contiguous();
  const int32_t* idx = index.data_ptr<int32_t>();
  const int64_t bad = count_bad_targets(idx, index.numel(), n_voxels);
  TORCH_CHECK(bad == 0, "trilinear_gather_backward: ", bad, " index entries lie outside [-1, ", n_voxels, ")");
  const Groups groups = group_by_target(idx, index.numel(), n_voxels);
  at::Tensor out = at::empty({n_voxels, grad.size(1)}, grad.options());
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "trilinear_gather_backward_cpu", [&] {
    scatter<scalar_t>(grad.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), groups, n_voxels, grad.size(1),
                      out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("trilinear_gather_backward", &trilinear_gather_backward_cpu); }

}  // namespace pointengine
