// A neighbour table read the other way, for the input gradient of a convolution: out[i, k] = o where
// nbr[o, k] = i, -1 where no output row reads input row i through offset k. A table that names one
// (i, k) twice (no kernel map does) is refused: its transpose would not be defined.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <functional>
#include <utility>

#include "../common/checks.h"

namespace pointengine {
namespace {

at::Tensor transpose_table_cpu(const at::Tensor& nbr_in, int64_t n_rows) {
  const char* op = "transpose_table";
  check_matrix(nbr_in, op, "nbr", at::kInt, -1, "[N_out, K]");
  check_row_count(nbr_in.size(0), op, "nbr");
  TORCH_CHECK(n_rows >= 0 && n_rows <= INT32_MAX, op, ": n_rows must be in [0, ", INT32_MAX, "], got ", n_rows);
  const at::Tensor nbr = nbr_in.contiguous();
  const int64_t m = nbr.size(0), kvol = nbr.size(1);
  const int32_t* t = nbr.data_ptr<int32_t>();
  // Counts of the entries outside [-1, n_rows) and of those >= 0, in one pass.
  using Counts = std::pair<int64_t, int64_t>;
  const Counts counts = at::parallel_reduce(
      0, m * kvol, 65536, Counts{0, 0},
      [&](int64_t begin, int64_t end, Counts c) {
        for (int64_t e = begin; e < end; ++e) c.first += t[e] < -1 || t[e] >= n_rows, c.second += t[e] >= 0;
        return c;
      },
      [](Counts a, Counts b) { return Counts{a.first + b.first, a.second + b.second}; });
  TORCH_CHECK(counts.first == 0, op, ": ", counts.first, " entries of nbr lie outside [-1, ", n_rows, ")");
  at::Tensor out = at::full({n_rows, kvol}, -1, nbr.options());
  int32_t* o_ptr = out.data_ptr<int32_t>();
  at::parallel_for(0, m, 4096, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      for (int64_t k = 0; k < kvol; ++k) {
        const int32_t i = t[o * kvol + k];
        if (i >= 0) o_ptr[int64_t(i) * kvol + k] = int32_t(o);
      }
  });
  // Two output rows naming one (i, k) would leave fewer entries than nbr has, and which of them
  // the slot holds would depend on the threads: refused.
  const int64_t written = at::parallel_reduce(
      0, n_rows * kvol, 65536, int64_t(0),
      [&](int64_t begin, int64_t end, int64_t count) {
        for (int64_t e = begin; e < end; ++e) count += o_ptr[e] >= 0;
        return count;
      },
      std::plus<int64_t>());
  TORCH_CHECK(written == counts.second, op, ": nbr names ", counts.second - written,
              " (input row, offset) slots more than once; a kernel map's table names each at most once");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pointengine, CPU, m) { m.impl("transpose_table", &transpose_table_cpu); }

}  // namespace pointengine
