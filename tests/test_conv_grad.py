"""Gradients of every convolution kind, both dataflows: torch.autograd.gradcheck in float64 for the
features, the weight and the bias; the backward's tables built once per neighbour table."""

import gc
import math
import weakref

import pytest
import torch

from pointengine import SparseTensor, _ops
from pointengine.coordinate_map import CoordinateMap
from pointengine.functional import DATAFLOWS, conv3d
from pointengine.functional import kmap as km
from pointengine.testing import random_input, random_sites, triple

# (kind, kernel_size, stride, dilation): small kernels keep the numerical Jacobian cheap.
CASES = [
    ("submanifold", 3, 1, 1),
    ("submanifold", (3, 1, 2), 1, (1, 1, 2)),
    ("dense", 2, 2, 1),
    ("floor", 3, 2, 1),
    ("dense", (3, 1, 2), (2, 1, 2), 1),
    ("transposed", 2, 2, 1),
    ("transposed", 3, 2, (2, 1, 1)),
    ("generative", 2, 2, 1),
    ("generative", (3, 1, 2), (2, 1, 2), 1),
]


def conv_input(kind: str, kernel_size, stride, dilation) -> tuple[SparseTensor, dict]:
    """The input tensor of a conv of this kind (a strided conv's output for transposed), and its arguments."""
    g = torch.Generator().manual_seed(0)
    feats, coords = random_input(g, 12, 2, torch.float64, batches=2, extent=4)
    args = dict(kernel_size=kernel_size, stride=stride, dilation=dilation)
    if kind in ("dense", "floor"):
        args["sites"] = kind
    if kind == "generative":
        return SparseTensor(feats, coords, triple(stride)), dict(args, transposed=True, generative=True)
    x = SparseTensor(feats, coords)
    if kind == "transposed":
        down = torch.randn(math.prod(triple(kernel_size)), 2, 2, generator=g, dtype=torch.float64)
        coarse = conv3d(x, down, **args)
        return coarse, dict(args, transposed=True)
    return x, args


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("kind,kernel_size,stride,dilation", CASES)
def test_gradcheck(dataflow, kind, kernel_size, stride, dilation):
    x, args = conv_input(kind, kernel_size, stride, dilation)
    g = torch.Generator().manual_seed(1)
    volume = math.prod(triple(kernel_size))
    weight = torch.randn(volume, x.feats.shape[1], 2, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, generator=g, dtype=torch.float64, requires_grad=True)
    feats = x.feats.detach().clone().requires_grad_()

    def conv(feats, weight, bias):
        return conv3d(x.replace_feats(feats), weight, bias, dataflow=dataflow, **args).feats

    assert torch.autograd.gradcheck(conv, (feats, weight, bias))


@pytest.mark.parametrize("dataflow", DATAFLOWS)
@pytest.mark.parametrize("needs", ["feats", "weight"])
def test_gradient_of_one_argument(dataflow, needs):
    """Only the requested gradient is formed, and it equals the one computed with both."""
    x, args = conv_input("dense", 3, 2, 1)
    weight = torch.randn(27, 2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    both = [x.feats.detach().clone().requires_grad_(), weight.clone().requires_grad_()]
    conv3d(x.replace_feats(both[0]), both[1], dataflow=dataflow, **args).feats.sum().backward()
    one = [x.feats.detach().clone(), weight.clone()]
    index = 0 if needs == "feats" else 1
    one[index].requires_grad_()
    conv3d(x.replace_feats(one[0]), one[1], dataflow=dataflow, **args).feats.sum().backward()
    assert one[1 - index].grad is None
    assert torch.equal(one[index].grad, both[index].grad)


def test_backward_builds_its_tables_once_per_table_and_again_after_the_table_changes(monkeypatch):
    """The transposed table and the pair lists are kept with the neighbour table: two backward passes
    over one table build each once; a table modified in place gets new ones (and the right gradients)."""
    builds = []
    for name in ("kernel_pairs", "transpose_table"):
        real = getattr(_ops, name)
        monkeypatch.setattr(_ops, name, lambda *args, real=real, name=name: builds.append(name) or real(*args))
    g = torch.Generator().manual_seed(5)
    nbr = km.submanifold_map(CoordinateMap(random_sites(300, 2, 8, g)), 3).nbr.clone()
    feats = torch.randn(nbr.shape[0], 4, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(27, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    grad_out = torch.randn(nbr.shape[0], 3, generator=g, dtype=torch.float64)

    def gradients():
        feats.grad = weight.grad = None
        _ops.conv_fused(feats, weight, nbr).backward(grad_out)
        return feats.grad, weight.grad

    def expected():
        with torch.no_grad():
            grad_feats = torch.ops.pointengine.conv_fused(
                grad_out, weight.transpose(1, 2).contiguous(), torch.ops.pointengine.transpose_table(nbr, nbr.shape[0]))
            return grad_feats, torch.ops.pointengine.conv_weight_grad(feats, grad_out, nbr)

    for _ in range(2):
        assert all(map(torch.equal, gradients(), expected()))
    assert sorted(builds) == ["kernel_pairs", "transpose_table"]
    nbr[nbr[:, 13] >= 0, 4] = -1  # in place: fewer pairs through offset 4
    assert all(map(torch.equal, gradients(), expected()))
    assert sorted(builds) == ["kernel_pairs"] * 2 + ["transpose_table"] * 2


def count_builds(monkeypatch, name: str) -> list:
    builds = []
    real = getattr(_ops, name)
    monkeypatch.setattr(_ops, name, lambda *args: builds.append(args) or real(*args))
    return builds


@pytest.mark.parametrize("kernel_size,dilation", [(3, 1), ((3, 1, 5), 1), (3, (1, 2, 1)), (5, 2)])
def test_odd_submanifold_tables_are_their_own_transpose_reversed(kernel_size, dilation):
    """What the backward relies on for the maps it marks mirrored, against the transpose built entry by entry."""
    g = torch.Generator().manual_seed(6)
    nbr = km.submanifold_map(CoordinateMap(random_sites(400, 2, 7, g)), kernel_size, dilation).nbr
    assert _ops._is_mirrored(nbr)
    assert torch.equal(_ops.transpose_table(nbr, nbr.shape[0]), nbr.flip(1))


def test_even_submanifold_tables_are_not_marked_mirrored():
    nbr = km.submanifold_map(CoordinateMap(random_sites(100, 1, 6, torch.Generator().manual_seed(7))), 2).nbr
    assert not _ops._is_mirrored(nbr)


def test_mirrored_input_gradient_builds_no_table_and_equals_the_transposed_tables(monkeypatch):
    """The input gradient of a conv on a marked submanifold table reads the table itself (the weight's
    offsets reversed); an unmarked copy of the table goes through the transposed table: the same
    gradients. Modified in place, the table is no longer taken as mirrored."""
    builds = count_builds(monkeypatch, "transpose_table")
    g = torch.Generator().manual_seed(8)
    nbr = km.submanifold_map(CoordinateMap(random_sites(300, 2, 8, g)), 3).nbr
    feats = torch.randn(nbr.shape[0], 4, generator=g, dtype=torch.float64)
    weight = torch.randn(27, 4, 3, generator=g, dtype=torch.float64)
    grad_out = torch.randn(nbr.shape[0], 3, generator=g, dtype=torch.float64)

    def input_gradient(table):
        x = feats.clone().requires_grad_()
        _ops.conv_fused(x, weight, table).backward(grad_out)
        return x.grad

    mirrored = input_gradient(nbr)
    assert builds == []
    generic = input_gradient(nbr.clone())
    assert len(builds) == 1
    torch.testing.assert_close(mirrored, generic, rtol=1e-12, atol=1e-12)
    nbr[nbr[:, 13] >= 0, 4] = -1  # no longer symmetric
    assert not _ops._is_mirrored(nbr)
    torch.testing.assert_close(input_gradient(nbr), input_gradient(nbr.clone()), rtol=0, atol=0)


def down_up_pair(seed: int):
    """A 2x2x2 stride-2 conv and its transposed conv back, with weights that need gradients."""
    g = torch.Generator().manual_seed(seed)
    sites = random_sites(500, 2, 10, g)
    x = SparseTensor(torch.randn(sites.shape[0], 3, generator=g, dtype=torch.float64), sites)
    down_w = torch.randn(8, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    up_w = torch.randn(8, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    coarse = conv3d(x, down_w, kernel_size=2, stride=2)
    return x, coarse, conv3d(coarse, up_w, kernel_size=2, stride=2, transposed=True)


def test_strided_and_transposed_maps_serve_as_each_others_transposed_table(monkeypatch):
    """A down- and up-sampling pair trains without building a transposed table; the tables they read
    equal the ones built; a table modified in place has its transpose built again."""
    builds = count_builds(monkeypatch, "transpose_table")
    x, coarse, up = down_up_pair(9)
    built_in_forward = len(builds)
    up.feats.square().sum().backward()
    assert len(builds) == built_in_forward == 1
    down_nbr = x.coordinate_map.kernel_maps[km.KernelMapKey((2, 2, 2), (2, 2, 2), (1, 1, 1), "dense")].nbr
    up_nbr = coarse.coordinate_map.kernel_maps[km.KernelMapKey((2, 2, 2), (2, 2, 2), (1, 1, 1), "transposed")].nbr
    for table, n_rows, other in ((down_nbr, x.num_sites, up_nbr), (up_nbr, coarse.num_sites, down_nbr)):
        assert _ops._transposed(table, n_rows) is other
        assert torch.equal(_ops.transpose_table(table, n_rows), other)
    up_nbr[:, 0] = -1
    rebuilt = _ops._transposed(down_nbr, x.num_sites)
    assert rebuilt is not up_nbr and torch.equal(rebuilt, _ops.transpose_table(down_nbr, x.num_sites))


def test_remembered_transposes_do_not_keep_their_tables_alive():
    """Each table of a down/up pair is the other's transpose; once the tensors are gone, so are the tables."""
    x, coarse, up = down_up_pair(10)
    up.feats.square().sum().backward()
    tables = [weakref.ref(m.nbr) for c in (x, coarse) for m in c.coordinate_map.kernel_maps.values()]
    assert len(tables) == 2
    del x, coarse, up
    gc.collect()
    assert all(t() is None for t in tables)


def test_convolutions_run_under_inference_mode():
    """Inference tensors have no version counter: the tables built under torch.inference_mode (odd
    submanifold, strided, transposed) are not recorded for a backward, and the forward gives the
    values it gives under no_grad, also when a map built outside is read inside."""
    def forward(x):
        g = torch.Generator().manual_seed(4)
        sub_w, down_w, up_w = (torch.randn(k, 4, 4, generator=g, dtype=torch.float64) for k in (27, 8, 8))
        coarse = conv3d(conv3d(x, sub_w, kernel_size=3), down_w, kernel_size=2, stride=2)
        return conv3d(coarse, up_w, kernel_size=2, stride=2, transposed=True).feats

    def sparse_input():
        return SparseTensor(*random_input(torch.Generator().manual_seed(11), 60, 4, batches=2, extent=6))

    x = sparse_input()
    with torch.no_grad():
        expected = forward(x)
    with torch.inference_mode():
        fresh = forward(sparse_input())
        reused = forward(x)  # its coordinate map already holds the tables built above
    assert torch.equal(fresh, expected) and torch.equal(reused, expected)
