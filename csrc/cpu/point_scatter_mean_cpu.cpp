// Scatter-mean of point features onto voxel rows: out[v] = mean of feats[i] over the points i with
// index[i] = v (0 where none; index -1 = the point falls in no voxel).
// The points are grouped per voxel by a stable counting sort, then each voxel sums its points in
// point order, in the accumulation type (double for float): output-stationary, no atomics, the
// same bits for any thread count.
#include <ATen/ATen.h>
#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "../common/point_rows.h"

namespace pointengine {
namespace {

template <typename scalar_t>
void scatter_mean(const scalar_t* feats, const Groups& groups, int64_t n_voxels, int64_t c, scalar_t* out) {
  using acc_t = at::acc_type<scalar_t, /*is_cuda=*/false>;
  at::parallel_for(0, n_voxels, 256, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> acc(c);
    for (int64_t v = begin; v < end; ++v) {
      const int64_t lo = groups.ptr[v], hi = groups.ptr[v + 1];
      std::fill(acc.begin(), acc.end(), acc_t(0));
      for (int64_t j = lo; j < hi; ++j) {
        const scalar_t* row = feats + groups.order[j] * c;
        for (int64_t ch = 0; ch < c; ++ch) acc[ch] += acc_t(row[ch]);
      }
      const acc_t count = acc_t(hi > lo ? hi - lo : 1);
      for (int64_t ch = 0; ch < c; ++ch) out[v * c + ch] = scalar_t(acc[ch] / count);
    }
  });
}

at::Tensor point_scatter_mean_cpu(const at::Tensor& feats_in, const at::Tensor& index_in, int64_t n_voxels) {
  const char* op = "point_scatter_mean";
  check_float_matrix(feats_in, op, "feats", "[N, C]");
  check_kernel_tensor(index_in, op, "index", at::kInt);
  TORCH_CHECK(index_in.dim() == 1 && index_in.size(0) == feats_in.size(0), op, ": index must have shape [",
              feats_in.size(0), "] (one entry per feats row), got ", index_in.sizes());
  TORCH_CHECK(n_voxels >= 0 && n_voxels <= INT32_MAX, op, ": n_voxels must be in [0, ", INT32_MAX, "], got ",
              n_voxels);
  const at::Tensor feats = feats_in.contiguous(), index = index_in.contiguous();
  const int64_t n = feats.size(0), c = feats.size(1);
  const int32_t* idx = index.data_ptr<int32_t>();
  const int64_t bad = count_bad_targets(idx, n, n_voxels);
  TORCH_CHECK(bad == 0, "point_scatter_mean: ", bad, " index entries lie outside [-1, ", n_voxels, ")");
  const Groups groups = group_by_target(idx, n, n_voxels);
  at::Tensor out = at::empty({n_voxels, c}, feats.options());
  AT_DISPATCH_FLOATING_TYPES(feats.scalar_type(), "point_scatter_mean_cpu", [&] {
    scatter_mean<scalar_t>(feats.data_ptr<scalar_t>(), groups, n_voxels, c, out.data_ptr<scalar_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("point_scatter_mean", &point_scatter_mean_cpu); }

}  // namespace pointengine
