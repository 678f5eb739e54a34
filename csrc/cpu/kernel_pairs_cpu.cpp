// The per-offset pair-list form of a kernel map (CSR by offset), derived from the neighbour table:
// pairs of offset k are in_rows[ptr[k]:ptr[k+1]], out_rows[ptr[k]:ptr[k+1]], sorted by output row.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "../common/checks.h"
#include "kernel_pairs_cpu.h"

namespace pointengine {

std::tuple<at::Tensor, at::Tensor, at::Tensor> kernel_pairs_cpu(const at::Tensor& nbr_in) {
  check_matrix(nbr_in, "kernel_pairs", "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(nbr_in.size(0), "kernel_pairs", "nbr");
  const at::Tensor nbr = nbr_in.contiguous();
  const int64_t m = nbr.size(0), kvol = nbr.size(1);
  const int32_t* t = nbr.data_ptr<int32_t>();
  // Rows are split into fixed chunks (independent of the thread count), each counted and then
  // filled at its own precomputed positions: two passes over the table, deterministic output.
  const int64_t chunk = 8192, n_chunks = (m + chunk - 1) / chunk;
  std::vector<int64_t> counts(n_chunks * kvol, 0);
  at::parallel_for(0, n_chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c)
      for (int64_t o = c * chunk; o < std::min(m, (c + 1) * chunk); ++o)
        for (int64_t k = 0; k < kvol; ++k) counts[c * kvol + k] += t[o * kvol + k] >= 0;
  });
  at::Tensor ptr = at::empty({kvol + 1}, nbr.options().dtype(at::kLong));
  int64_t* p = ptr.data_ptr<int64_t>();
  std::vector<int64_t> start(n_chunks * kvol);
  int64_t total = 0;
  for (int64_t k = 0; k < kvol; ++k) {
    p[k] = total;
    for (int64_t c = 0; c < n_chunks; ++c) start[c * kvol + k] = total, total += counts[c * kvol + k];
  }
  p[kvol] = total;
  at::Tensor in_rows = at::empty({total}, nbr.options());
  at::Tensor out_rows = at::empty({total}, nbr.options());
  int32_t* ir = in_rows.data_ptr<int32_t>();
  int32_t* orow = out_rows.data_ptr<int32_t>();
  at::parallel_for(0, n_chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      int64_t* pos = start.data() + c * kvol;
      for (int64_t o = c * chunk; o < std::min(m, (c + 1) * chunk); ++o)
        for (int64_t k = 0; k < kvol; ++k) {
          const int32_t i = t[o * kvol + k];
          if (i < 0) continue;
          ir[pos[k]] = i;
          orow[pos[k]++] = int32_t(o);
        }
    }
  });
  return {in_rows, out_rows, ptr};
}

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("kernel_pairs", &kernel_pairs_cpu); }

}  // namespace pointengine
