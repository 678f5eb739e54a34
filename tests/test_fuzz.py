"""Seeded fuzzing of the raw ops and of the public API. Every call returns or raises the documented
exception: a RuntimeError naming the op for a raw op, a ValueError or TypeError from the public API.
Never a crash, a hang or a sanitizer report: `make sanitize` runs these under AddressSanitizer and
UndefinedBehaviorSanitizer with thousands of examples (--fuzz-examples); `make test` samples a few.
The seed is fixed and nothing is replayed from a database, so a run is reproducible."""

import math

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import pointengine as pe
from pointengine import _C
from pointengine._checks import as_triple
from pointengine.functional import conv3d, kernel_offsets, linear

ops = torch.ops.pointengine

# Values at and around every limit the kernels know: packed fields, int32, the geometry bound.
EDGES = [0, 1, -1, 2, 3, 7, 16, 32767, 32768, -32768, -32769, 65534, 65535, 65536, 2**31 - 1, -(2**31)]
INTS = st.one_of(st.integers(-4, 4), st.sampled_from(EDGES))
FLOAT_DTYPES = [torch.float32, torch.float64]


def fuzz(examples: int, seed_value: int):
    """Decorators for a nested @given test: `examples` examples from a fixed seed, no database."""

    def apply(test):
        checks = settings(max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck))
        return seed(seed_value)(checks(test))

    return apply


def mostly(good, bad, one_in: int = 5):
    """`good`, but `bad` one time in `one_in`: each argument is usually valid, so that calls get past
    the first check and into the kernels."""
    return st.integers(1, one_in).flatmap(lambda i: bad if i == 1 else good)


# Mostly the dtypes the kernels compute in.
FUZZ_DTYPES = mostly(st.sampled_from(FLOAT_DTYPES), st.just(torch.float16))
# Coordinates near the origin, and now and then at the edges of the packable range.
COORD_VALUES = mostly(st.integers(-3, 3), st.sampled_from([-32768, -32767, 32766, 32767]), one_in=8)


@st.composite
def laid_out(draw, tensor: torch.Tensor) -> torch.Tensor:
    """The tensor itself, or a non-contiguous view holding the same values."""
    if tensor.numel() < 2 or draw(st.booleans()):
        return tensor
    return torch.stack([tensor, torch.zeros_like(tensor)], -1)[..., 0]


@st.composite
def int_tensors(draw, shape, dtype=torch.int32, values=INTS) -> torch.Tensor:
    data = draw(st.lists(values, min_size=math.prod(shape), max_size=math.prod(shape)))
    return draw(laid_out(torch.tensor(data, dtype=torch.int64).reshape(shape).to(dtype)))


@st.composite
def float_tensors(draw, shape, dtypes=None) -> torch.Tensor:
    dtype = draw(FUZZ_DTYPES if dtypes is None else dtypes)
    data = draw(st.lists(st.floats(-4, 4, width=16), min_size=math.prod(shape), max_size=math.prod(shape)))
    return draw(laid_out(torch.tensor(data, dtype=dtype).reshape(shape)))


def shapes(*good, one_in: int = 5):
    """Mostly `good` (one of its shapes); sometimes any rank and sizes."""
    return mostly(st.sampled_from([list(shape) for shape in good]), st.lists(st.integers(0, 5), max_size=3), one_in)


@st.composite
def coord_tensors(draw, valid_only=False) -> torch.Tensor:
    """Mostly distinct-or-not rows in the packable range, near the origin or at the range edge;
    sometimes anything of any integer dtype and shape."""
    rows = st.lists(st.tuples(st.integers(0, 2), COORD_VALUES, COORD_VALUES, COORD_VALUES), min_size=1, max_size=8)
    in_range = rows.map(lambda r: torch.tensor(r, dtype=torch.int32).reshape(-1, 4))
    anything = st.integers(0, 6).flatmap(
        lambda n: st.sampled_from([torch.int32, torch.int64]).flatmap(
            lambda dtype: shapes([n, 4]).flatmap(lambda shape: int_tensors(shape, dtype))
        )
    )
    return draw(laid_out(draw(in_range if valid_only else mostly(in_range, anything))))


@st.composite
def tables(draw) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(keys, vals, the coords they were built from): a hash_build table, usually intact, else
    damaged (full, cut short, other dtypes) or replaced by anything."""
    coords = draw(coord_tensors(valid_only=True))
    keys, vals, _ = ops.hash_build(coords)
    damage = draw(mostly(st.just("none"), st.sampled_from(["full", "cut", "dtype", "random"])))
    if damage == "full":
        empty = keys == -1
        keys[empty] = draw(int_tensors([int(empty.sum())], torch.int64, st.integers(0, 2**62)))
        vals[empty] = draw(int_tensors([int(empty.sum())]))
    elif damage == "cut":
        length = draw(st.integers(0, len(keys)))
        keys, vals = keys[:length], vals[: draw(st.sampled_from([length, max(length - 1, 0)]))]
    elif damage == "dtype":
        keys, vals = keys.int(), vals.long()
    elif damage == "random":
        length = draw(st.sampled_from([0, 1, 3, 8, 16]))
        keys = draw(int_tensors([length], torch.int64, st.one_of(INTS, st.just(-1))))
        vals = draw(int_tensors([length]))
    return draw(laid_out(keys)), draw(laid_out(vals)), coords


def strides():
    good = st.lists(st.integers(1, 3), min_size=3, max_size=3)
    bad = st.lists(st.one_of(st.integers(1, 3), st.sampled_from([0, -1, 65535, 65536, 2**32])), min_size=2, max_size=4)
    return mostly(good, bad)


def offset_tensors():
    """Kernel offsets as kernel_offsets makes them, or arbitrary int32 triples (edge values)."""
    canonical = st.tuples(st.integers(1, 3), st.integers(1, 3)).map(lambda a: kernel_offsets(*a))
    return mostly(canonical, shapes([3, 3], [0, 3]).flatmap(int_tensors))


@st.composite
def raw_calls(draw):
    """(op name, a call of it)."""
    op = draw(
        st.sampled_from(
            [
                "batch_norm_train",
                "batch_norm_train_backward",
                "hash_build",
                "hash_query",
                "unique_coords",
                "unique_coords_inverse",
                "neighbor_table",
                "kernel_pairs",
                "conv_fused",
                "conv_fused_portable",
                "conv_fused_epilogue",
                "conv_fused_epilogue_portable",
                "conv_weight_grad",
                "conv_weight_grad_portable",
                "conv_weight_grad_pairs",
                "linear",
                "linear_portable",
                "point_scatter_mean",
                "trilinear_table",
                "trilinear_gather",
                "trilinear_gather_portable",
                "trilinear_gather_add_",
                "trilinear_gather_backward",
            ]
        )
    )
    if op.startswith(("point_", "trilinear_")):
        return point_voxel_call(draw, op)
    if op.startswith("batch_norm"):
        return batch_norm_call(draw, op)
    if op in ("hash_build", "unique_coords", "unique_coords_inverse"):
        coords = draw(coord_tensors())
        return op, lambda: getattr(ops, op)(coords)
    if op == "hash_query":
        keys, vals, built_from = draw(tables())
        coords = draw(st.one_of(st.just(built_from), coord_tensors()))
        return op, lambda: ops.hash_query(keys, vals, coords)
    if op == "neighbor_table":
        keys, vals, built_from = draw(tables())
        out_coords = draw(st.one_of(st.just(built_from), coord_tensors()))
        offsets = draw(laid_out(draw(offset_tensors())))
        stride, transposed, submanifold = draw(strides()), draw(st.booleans()), draw(st.booleans())
        return op, lambda: ops.neighbor_table(keys, vals, out_coords, offsets, stride, transposed, submanifold)
    n_in, n_out, c_in, c_out, k = (draw(st.integers(0, 5)) for _ in range(5))
    rows = st.one_of(st.integers(-2, n_in + 1), st.sampled_from(EDGES))
    nbr = draw(shapes([n_out, k]).flatmap(lambda shape: int_tensors(shape, values=rows)))
    if op == "kernel_pairs":
        return op, lambda: ops.kernel_pairs(nbr)
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    if op.startswith("conv_fused"):
        feats = draw(shapes([n_in, c_in]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
        weight = draw(
            shapes([k, c_in, c_out]).flatmap(
                lambda shape: float_tensors(shape, mostly(st.just(dtype), st.just(torch.float32)))
            )
        )
        if op.startswith("conv_fused_epilogue"):
            dtypes = mostly(st.just(dtype), FUZZ_DTYPES)
            bias = draw(st.one_of(st.none(), shapes([c_out]).flatmap(lambda shape: float_tensors(shape, dtypes))))
            residual = draw(
                st.one_of(st.none(), shapes([n_out, c_out]).flatmap(lambda shape: float_tensors(shape, dtypes)))
            )
            relu = draw(st.booleans())
            if op == "conv_fused_epilogue":
                return op, lambda: ops.conv_fused_epilogue(feats, weight, nbr, bias, residual, relu)
            return "conv_fused_epilogue", lambda: _C.conv_fused_epilogue_on(feats, weight, nbr, bias, residual, relu, "portable")
        run = ops.conv_fused if op == "conv_fused" else _C.conv_fused_portable
        return "conv_fused", lambda: run(feats, weight, nbr)
    if op.startswith("conv_weight_grad"):
        feats = draw(shapes([n_in, c_in]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
        grad_out = draw(
            shapes([n_out, c_out]).flatmap(
                lambda shape: float_tensors(shape, mostly(st.just(dtype), st.just(torch.float32)))
            )
        )
        if op == "conv_weight_grad_pairs":
            # Pair lists drawn on their own (kernel_pairs' are valid by construction): rows in and
            # out of range, ptr rising or not, lengths that agree or not.
            n_pairs = draw(st.integers(0, 6))
            in_rows = draw(shapes([n_pairs]).flatmap(lambda shape: int_tensors(shape, values=rows)))
            out_rows = draw(shapes([n_pairs]).flatmap(
                lambda shape: int_tensors(shape, values=st.integers(-1, n_out + 1))))
            ptr = draw(shapes([k + 1]).flatmap(lambda shape: int_tensors(
                shape, dtype=torch.int64, values=mostly(st.integers(0, n_pairs), st.integers(-1, n_pairs + 1)))))
            return "conv_weight_grad", lambda: ops.conv_weight_grad_pairs(feats, grad_out, in_rows, out_rows, ptr)
        run = ops.conv_weight_grad if op == "conv_weight_grad" else _C.conv_weight_grad_portable
        return "conv_weight_grad", lambda: run(feats, grad_out, nbr)
    input = draw(shapes([n_in, c_in]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
    weight = draw(shapes([c_out, c_in]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
    bias = draw(st.one_of(st.none(), shapes([c_out]).flatmap(lambda shape: float_tensors(shape, st.just(dtype)))))
    run = ops.linear if op == "linear" else _C.linear_portable
    return "linear", lambda: run(input, weight, bias)


def batch_norm_call(draw, op: str):
    """(op name, a call of it) for the training batch norm on N rows of C channels."""
    n, c = draw(st.integers(0, 5)), draw(st.integers(0, 4))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    rows = shapes([n, c]).flatmap(lambda shape: float_tensors(shape, mostly(st.just(dtype), FUZZ_DTYPES)))
    vector = shapes([c]).flatmap(lambda shape: float_tensors(shape, mostly(st.just(dtype), FUZZ_DTYPES)))
    x, weight, bias = draw(rows), draw(vector), draw(vector)
    eps, relu = draw(mostly(st.just(1e-5), st.sampled_from([0.0, -1.0]))), draw(st.booleans())
    if op == "batch_norm_train":
        return op, lambda: ops.batch_norm_train(x, weight, bias, eps, relu)
    stats = shapes([c]).flatmap(lambda shape: float_tensors(shape, mostly(st.just(torch.float64), FUZZ_DTYPES)))
    grad, y, mean, var = draw(rows), draw(rows), draw(stats), draw(stats)
    if draw(st.booleans()):  # the ReLU's mask recomputed from x and bias instead of read from y
        return op, lambda: ops.batch_norm_train_backward(grad, x, None, mean, var.abs(), weight, eps, relu, False, bias)
    return op, lambda: ops.batch_norm_train_backward(grad, x, y, mean, var.abs(), weight, eps, relu)


def point_voxel_call(draw, op: str):
    """(op name, a call of it) for the point-voxel ops: N points, M voxels, C channels."""
    n, m, c = (draw(st.integers(0, 5)) for _ in range(3))
    rows = st.one_of(st.integers(-2, m + 1), st.sampled_from(EDGES))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    if op == "point_scatter_mean":
        feats = draw(shapes([n, c]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
        index = draw(shapes([n]).flatmap(lambda shape: int_tensors(shape, values=rows)))
        n_voxels = draw(mostly(st.integers(0, 6), st.sampled_from([-1, 2**31, -(2**40)])))
        return op, lambda: ops.point_scatter_mean(feats, index, n_voxels)
    if op == "trilinear_table":
        keys, vals, built_from = draw(tables())
        corners = draw(shapes([len(built_from), 8]).flatmap(lambda shape: int_tensors(shape, values=rows)))
        coords = draw(shapes([n, 4]).flatmap(float_tensors))
        stride, nearest = draw(strides()), draw(st.booleans())
        return op, lambda: ops.trilinear_table(keys, vals, corners, coords, stride, nearest)
    index = draw(shapes([n, 8]).flatmap(lambda shape: int_tensors(shape, values=rows)))
    weights = draw(shapes([n, 8]).flatmap(lambda shape: float_tensors(shape, mostly(st.just(dtype), FUZZ_DTYPES))))
    if op == "trilinear_gather_backward":
        grad = draw(shapes([n, c]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
        n_voxels = draw(mostly(st.just(m), st.sampled_from([-1, 2**31])))
        return op, lambda: ops.trilinear_gather_backward(grad, index, weights, n_voxels)
    feats = draw(shapes([m, c]).flatmap(lambda shape: float_tensors(shape, st.just(dtype))))
    base = draw(st.one_of(st.none(), shapes([n, c]).flatmap(lambda shape: float_tensors(shape, st.just(dtype)))))
    if op == "trilinear_gather_add_":
        base = torch.zeros(n, c, dtype=dtype) if base is None else base
        return op, lambda: ops.trilinear_gather_add_(base, feats, index, weights)
    run = ops.trilinear_gather if op == "trilinear_gather" else _C.trilinear_gather_portable
    return "trilinear_gather", lambda: run(feats, index, weights, base)


def test_fuzz_raw_ops(fuzz_examples):
    @fuzz(fuzz_examples, seed_value=12)
    @given(call=raw_calls())
    def check(call):
        name, run = call
        try:
            run()
        except RuntimeError as error:
            assert str(error).startswith(f"{name}: "), str(error)

    check()


# --- the public API -----------------------------------------------------------------------------------


def geometry(good):
    """A kernel size, stride or dilation: mostly `good`, sometimes out of bounds or of a wrong type."""
    bad = st.one_of(
        st.sampled_from([0, -1, 65535, 65536, 2**32, True, 2.0, "3", None]),
        st.lists(st.one_of(st.integers(1, 3), st.sampled_from([0, 65535, 65536, False])), min_size=2, max_size=4).map(
            tuple
        ),
    )
    return mostly(st.one_of(good, st.tuples(good, good, good)), bad, one_in=10)


@st.composite
def sparse_tensors(draw):
    """(feats, coords, stride) for SparseTensor: mostly valid."""
    coords = draw(coord_tensors())
    n = coords.shape[0] if coords.dim() else 0
    feats = draw(shapes([n, 2], one_in=10).flatmap(float_tensors))
    return feats, coords, draw(geometry(st.integers(1, 4)))


@st.composite
def conv_arguments(draw, c_in: int):
    kernel_size = draw(geometry(st.integers(1, 3)))
    stride = draw(geometry(st.integers(1, 2)))
    dilation = draw(geometry(st.one_of(st.integers(1, 2), st.sampled_from([30000, 32768]))))
    try:
        volume = math.prod(as_triple(kernel_size, "kernel_size"))
    except ValueError:
        volume = 27
    # A kernel too large for a weight gets one that does not fit it: the shape check answers.
    volume = volume if volume <= 4096 else 1
    volume += draw(mostly(st.just(0), st.just(1), one_in=10))
    transposed = draw(st.booleans())
    return {
        "weight": torch.randn(volume, c_in, 2, dtype=torch.float64),
        "bias": draw(mostly(st.sampled_from([None, torch.zeros(2, dtype=torch.float64)]), st.just(torch.zeros(3)), 10)),
        "kernel_size": kernel_size,
        "stride": stride,
        "dilation": dilation,
        "transposed": transposed,
        "generative": draw(mostly(st.just(transposed), st.booleans())),
        "sites": draw(mostly(st.sampled_from(["dense", "floor"]), st.just("ceil"), 10)),
        "dataflow": draw(mostly(st.sampled_from([None, "fused", "gather_scatter"]), st.just("im2col"), 10)),
    }


def check_sparse_result(y: pe.SparseTensor) -> None:
    coords = y.coords
    assert coords.dtype == torch.int32 and y.feats.shape[0] == coords.shape[0]
    assert len(torch.unique(coords, dim=0)) == len(coords)
    assert bool((coords[:, 1:] >= -32768).all() and (coords[:, 1:] <= 32767).all())


def test_fuzz_public_api(fuzz_examples):
    @fuzz(fuzz_examples, seed_value=34)
    @given(tensor=sparse_tensors(), data=st.data())
    def check(tensor, data):
        feats, coords, stride = tensor
        try:
            x = pe.SparseTensor(feats.double(), coords, stride)
        except (ValueError, TypeError):
            return
        for _ in range(data.draw(st.integers(1, 3))):
            args = data.draw(conv_arguments(x.feats.shape[1]))
            try:
                y = conv3d(x, **args)
            except (ValueError, TypeError):
                continue
            check_sparse_result(y)
            x = y.replace_feats(y.feats[:, :2])
        queries = data.draw(coord_tensors())
        try:
            found = x.coordinate_map.query(queries)
            assert found.shape == (queries.shape[0],) and bool((found >= -1).all() and (found < x.num_sites).all())
        except (ValueError, TypeError):
            pass
        weight = data.draw(float_tensors(data.draw(st.sampled_from([[3, x.feats.shape[1]], [3, 5]]))))
        try:
            assert linear(x.feats, weight).shape == (x.num_sites, 3)
        except (ValueError, TypeError):
            pass

    check()


@st.composite
def point_tensors(draw):
    """(feats, coords) for PointTensor: mostly float points near the origin in batches 0-2, sometimes
    NaN, inf, huge, fractional batches or another shape and dtype."""
    n = draw(mostly(st.integers(1, 6), st.just(0)))
    value = mostly(st.floats(-4, 4, width=32), st.sampled_from([math.nan, math.inf, -1e30, 40000.5]), one_in=40)
    batch = mostly(st.sampled_from([0, 1, 2]), st.just(0.5), one_in=40)
    rows = [[draw(batch), *(draw(value) for _ in range(3))] for _ in range(n)]
    dtype = draw(mostly(st.sampled_from(FLOAT_DTYPES), st.just(torch.float16), one_in=20))
    coords = torch.tensor(rows, dtype=dtype).reshape(n, 4)
    coords = draw(mostly(st.just(coords), st.sampled_from([coords[:, :3], coords.int(), coords.reshape(-1)]), 20))
    feats = draw(shapes([n, 2], one_in=20).flatmap(lambda shape: float_tensors(shape, st.sampled_from(FLOAT_DTYPES))))
    return feats, draw(laid_out(coords))


def test_fuzz_point_voxel_api(fuzz_examples):
    @fuzz(fuzz_examples, seed_value=56)
    @given(points=point_tensors(), voxels=sparse_tensors(), nearest=mostly(st.booleans(), st.just(1)))
    def check(points, voxels, nearest):
        try:
            z = pe.PointTensor(*points)
            x = pe.SparseTensor(voxels[0].to(z.feats.dtype), voxels[1], voxels[2])
        except (ValueError, TypeError):
            return
        for call in (
            lambda: pe.functional.initial_voxelize(z),
            lambda: pe.functional.voxel_to_point(x, z, nearest=nearest),
            lambda: pe.functional.point_to_voxel(x, z),
        ):
            try:
                out = call()
            except (ValueError, TypeError):
                continue
            assert bool(torch.isfinite(out.feats).all() or not torch.isfinite(z.feats).all())

    check()
