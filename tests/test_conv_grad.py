"""Gradients of every convolution kind, both dataflows: torch.autograd.gradcheck in float64 for the
features, the weight and the bias; the backward's tables built once per neighbour table."""

import math

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
