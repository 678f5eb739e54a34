"""conv_weight_grad (the weight gradient of conv_fused), and conv_weight_grad_pairs (the same from the
table's pair lists), on every CPU path against a float64 brute force
over the (output row, offset) entries of the table and against the per-offset gather + matmul formula
it replaced: random tables (absent entries, empty offsets, repeated input rows, no rows), real
submanifold and strided maps, channel counts with tails past the 8- and 16-wide vectors and 32-wide
panels, offsets of several packed chunks; bitwise equal at 1 and 2 threads, the pair-list op equal to
the table op, and AVX-512 bitwise equal to AVX2."""

import pytest
import torch

from pointengine import _C, _ops
from pointengine.coordinate_map import CoordinateMap
from pointengine.functional import kmap as km
from pointengine.testing import RELATIVE_TOLERANCE, gather_matmul_weight_grad, random_sites, relative_error

# The registered op (its preferred path) and every path this CPU runs, by name.
PATHS = {
    "default": torch.ops.pointengine.conv_weight_grad,
    **{path: lambda *args, path=path: _C.conv_weight_grad_on(*args, path) for path in _C.cpu_paths()},
    "pairs": lambda feats, grad_out, nbr: _ops.conv_weight_grad_pairs(feats, grad_out, *_ops.kernel_pairs(nbr)),
}
CHANNELS = [(1, 1), (3, 7), (5, 9), (8, 33), (33, 40), (17, 64), (14, 24), (20, 48), (9, 100), (6, 130)]


def brute_force(feats, grad_out, nbr):
    """Every present entry (o, k) adds the outer product feats[i] x grad_out[o], in float64."""
    out = torch.zeros(nbr.shape[1], feats.shape[1], grad_out.shape[1], dtype=torch.float64)
    for o, row in enumerate(nbr.tolist()):
        for k, i in enumerate(row):
            if i >= 0:
                out[k] += torch.outer(feats[i].double(), grad_out[o].double())
    return out


def random_table(n_in, n_out, kvol, g, present=0.4):
    """Random entries in [0, n_in) kept with probability `present`, the rest -1; offset 1 is empty."""
    nbr = torch.randint(0, max(n_in, 1), (n_out, kvol), generator=g, dtype=torch.int32)
    nbr[torch.rand(n_out, kvol, generator=g) >= present] = -1
    if kvol > 1:
        nbr[:, 1] = -1
    return nbr


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_random_tables_match_brute_force(path, dtype, c_in, c_out):
    g = torch.Generator().manual_seed(c_in * 100 + c_out)
    cases = [(30, 300, 8, 0.4), (5, 40, 3, 1.0), (0, 7, 4, 0.0), (6, 0, 5, 0.5), (50, 700, 3, 0.6)]
    for n_in, n_out, kvol, present in cases:
        nbr = random_table(n_in, n_out, kvol, g, present)
        feats = torch.randn(n_in, c_in, generator=g, dtype=torch.float64)
        grad_out = torch.randn(n_out, c_out, generator=g, dtype=torch.float64)
        out = PATHS[path](feats.to(dtype), grad_out.to(dtype), nbr)
        assert out.dtype == dtype and out.shape == (kvol, c_in, c_out)
        expected = brute_force(feats, grad_out, nbr)
        if expected.abs().max() == 0:
            assert torch.equal(out, torch.zeros_like(out))
        else:
            assert relative_error(out.double(), expected) <= RELATIVE_TOLERANCE[dtype]
        if kvol > 1:
            assert torch.equal(out[1], torch.zeros_like(out[1]))  # the empty offset


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kernel_size, stride", [(3, 1), (2, 2)])
def test_real_maps_match_gather_matmul(path, dtype, kernel_size, stride):
    g = torch.Generator().manual_seed(kernel_size * 10 + stride)
    coords = random_sites(400, 3, 9, g)
    cmap = CoordinateMap(coords)
    kmap = km.submanifold_map(cmap, kernel_size) if stride == 1 else km.strided_map(cmap, kernel_size, stride)
    feats = torch.randn(len(coords), 19, generator=g, dtype=torch.float64)
    grad_out = torch.randn(kmap.nbr.shape[0], 35, generator=g, dtype=torch.float64)
    out = PATHS[path](feats.to(dtype), grad_out.to(dtype), kmap.nbr)
    assert relative_error(out.double(), gather_matmul_weight_grad(feats, grad_out, kmap.nbr)) <= RELATIVE_TOLERANCE[dtype]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bitwise_equal_across_thread_counts(path, dtype, restore_threads):
    g = torch.Generator().manual_seed(0)
    cmap = CoordinateMap(random_sites(2000, 2, 16, g))
    nbr = km.submanifold_map(cmap, 3).nbr
    feats = torch.randn(len(cmap), 19, generator=g, dtype=dtype)
    grad_out = torch.randn(len(cmap), 35, generator=g, dtype=dtype)
    torch.set_num_threads(1)
    one = PATHS[path](feats, grad_out, nbr)
    torch.set_num_threads(2)
    assert torch.equal(one, PATHS[path](feats, grad_out, nbr))


@pytest.mark.skipif(_C.cpu_paths()[-1] != "avx512", reason="this CPU has no AVX-512")
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_avx512_equals_avx2_bit_for_bit(c_in, c_out):
    g = torch.Generator().manual_seed(3 * c_in + c_out)
    nbr = random_table(300, 500, 27, g)
    feats, grad_out = torch.randn(300, c_in, generator=g), torch.randn(500, c_out, generator=g)
    assert torch.equal(_C.conv_weight_grad_on(feats, grad_out, nbr, "avx512"), _C.conv_weight_grad_on(feats, grad_out, nbr, "avx2"))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("c_in, c_out", CHANNELS)
def test_pair_lists_give_the_table_ops_bits(dtype, c_in, c_out):
    g = torch.Generator().manual_seed(7 * c_in + c_out)
    nbr = random_table(300, 600, 27, g)
    feats = torch.randn(300, c_in, generator=g, dtype=dtype)
    grad_out = torch.randn(600, c_out, generator=g, dtype=dtype)
    expected = torch.ops.pointengine.conv_weight_grad(feats, grad_out, nbr)
    assert torch.equal(_ops.conv_weight_grad_pairs(feats, grad_out, *_ops.kernel_pairs(nbr)), expected)


@pytest.mark.parametrize("order", ["sorted", "shuffled"])
def test_blocks_of_output_rows(order, restore_threads):
    """Enough output rows and channels that the vector kernels go through the rows in several blocks
    (at least 1,024 rows each): sorted pair lists (kernel_pairs') and pair lists shuffled within each
    offset both sum every pair once, at 1 and 2 threads to the same bits."""
    g = torch.Generator().manual_seed(11)
    nbr = random_table(900, 4100, 6, g)
    feats, grad_out = torch.randn(900, 200, generator=g), torch.randn(4100, 72, generator=g)
    in_rows, out_rows, ptr = _ops.kernel_pairs(nbr)
    if order == "shuffled":
        permutation = torch.cat([start + torch.randperm(int(end - start), generator=g)
                                 for start, end in zip(ptr[:-1].tolist(), ptr[1:].tolist())])
        in_rows, out_rows = in_rows[permutation], out_rows[permutation]
    torch.set_num_threads(1)
    one = _ops.conv_weight_grad_pairs(feats, grad_out, in_rows, out_rows, ptr)
    torch.set_num_threads(2)
    assert torch.equal(one, _ops.conv_weight_grad_pairs(feats, grad_out, in_rows, out_rows, ptr))
    expected = gather_matmul_weight_grad(feats.double(), grad_out.double(), nbr)
    assert relative_error(one.double(), expected) <= RELATIVE_TOLERANCE[torch.float32]


@pytest.mark.parametrize("path", [path for path in _C.cpu_paths() if path != "portable"])
@pytest.mark.parametrize("c_in, c_out", [(5, 16), (13, 32), (33, 48), (8, 64), (20, 24)])
def test_rows_read_in_place_give_the_copied_rows_bits(path, c_in, c_out, restore_threads):
    """A submanifold map reads every feats and grad_out row about 4 times: the vector kernels read the
    rows in place. The same pairs over feats padded with 9 times as many rows that no pair reads make
    them copy each chunk first (rows read less than twice on average): the same bits, at 1 and 2
    threads, and the float64 gather + matmul formula's values."""
    g = torch.Generator().manual_seed(c_in * 64 + c_out)
    cmap = CoordinateMap(random_sites(3000, 2, 20, g))
    nbr = km.submanifold_map(cmap, 3).nbr
    feats = torch.randn(len(cmap), c_in, generator=g)
    grad_out = torch.randn(len(cmap), c_out, generator=g)
    padded = torch.cat([feats, torch.randn(9 * len(cmap), c_in, generator=g)])
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results += [_C.conv_weight_grad_on(feats, grad_out, nbr, path), _C.conv_weight_grad_on(padded, grad_out, nbr, path)]
    assert all(torch.equal(results[0], other) for other in results[1:])
    expected = gather_matmul_weight_grad(feats.double(), grad_out.double(), nbr)
    assert relative_error(results[0].double(), expected) <= RELATIVE_TOLERANCE[torch.float32]


@pytest.mark.parametrize("c_in, c_out", [(5, 16), (33, 48), (20, 24), (64, 128)])
def test_rows_in_order_give_the_copied_rows_bits(c_in, c_out, restore_threads):
    """Pair p = (p, p) over all rows (a dense layer's gradient, in blocks of rows as offsets): read in
    place; with feats padded by a row no pair reads, the same pairs are copied first. The same bits
    at 1 and 2 threads, and the float64 product's values."""
    g = torch.Generator().manual_seed(c_in + c_out)
    n = 5000
    feats, grad_out = torch.randn(n, c_in, generator=g), torch.randn(n, c_out, generator=g)
    rows = torch.arange(n, dtype=torch.int32)
    ptr = torch.tensor([0, 1024, 2048, 4000, n])
    padded = torch.cat([feats, torch.randn(1, c_in, generator=g)])
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results += [_ops.conv_weight_grad_pairs(feats, grad_out, rows, rows, ptr),
                    _ops.conv_weight_grad_pairs(padded, grad_out, rows, rows, ptr)]
    assert all(torch.equal(results[0], other) for other in results[1:])
    for k, (begin, end) in enumerate(zip(ptr[:-1].tolist(), ptr[1:].tolist())):
        expected = feats[begin:end].double().t() @ grad_out[begin:end].double()
        assert relative_error(results[0][k].double(), expected) <= RELATIVE_TOLERANCE[torch.float32]
