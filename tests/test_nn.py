"""nn modules against references: Conv3d vs the dense float64 conv (and the adjoint identity for the
transposed form), BatchNorm vs torch on feats, cat, global pooling vs per-batch loops, ToDense."""

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.testing import dense_conv_reference, random_sites, read_sites


def random_tensor(n=150, channels=3, batches=2, extent=7, seed=0, dtype=torch.float64) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, batches, extent, gen)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen, dtype=torch.float64).to(dtype), coords)


@pytest.mark.parametrize(
    "kernel_size, stride, dilation",
    [(3, 1, 1), (1, 1, 1), (3, 1, 2), ((3, 1, 2), 1, 1), (2, 2, 1), (3, 2, 1), ((2, 3, 1), (2, 3, 1), 1)],
)
@pytest.mark.parametrize("bias", [False, True])
def test_conv3d_matches_dense_reference(kernel_size, stride, dilation, bias):
    x = random_tensor()
    conv = nn.Conv3d(3, 5, kernel_size, stride, dilation, bias=bias).double()
    out = conv(x)
    ref_coords, ref_feats = dense_conv_reference(
        x.feats, x.coords, conv.weight.detach(), conv.kernel_size, conv.stride, conv.dilation
    )
    if conv.stride == (1, 1, 1):
        assert out.coordinate_map is x.coordinate_map
    else:
        assert {tuple(c) for c in out.coords.tolist()} == {tuple(c) for c in ref_coords.tolist()}
    expected = read_sites(ref_coords, ref_feats, out.coords)
    if bias:
        expected = expected + conv.bias.detach()
    torch.testing.assert_close(out.feats, expected, rtol=1e-10, atol=1e-10)
    assert out.stride == tuple(a * b for a, b in zip(x.stride, conv.stride))


@pytest.mark.parametrize("dataflow", ["fused", "gather_scatter"])
def test_conv3d_transposed_is_the_adjoint_of_the_strided_conv(dataflow):
    """<down(x), y> = <x, up(y)> with up's weight[k] = down's weight[k]^T, and up returns x's sites."""
    x = random_tensor(channels=4)
    down = nn.Conv3d(4, 6, 2, 2).double()
    up = nn.Conv3d(6, 4, 2, 2, transposed=True, dataflow=dataflow).double()
    with torch.no_grad():
        up.weight.copy_(down.weight.transpose(1, 2))
    coarse = down(x)
    y = coarse.replace_feats(torch.randn_like(coarse.feats))
    back = up(y)
    assert back.coordinate_map is x.coordinate_map and back.stride == x.stride
    torch.testing.assert_close((coarse.feats * y.feats).sum(), (x.feats * back.feats).sum(), rtol=1e-12, atol=1e-12)


def test_conv3d_weight_layout_and_init():
    conv = nn.Conv3d(8, 16, (3, 1, 2))
    assert conv.weight.shape == (6, 8, 16) and conv.bias is None
    bound = 1 / (6 * 8) ** 0.5
    assert 0 < conv.weight.abs().max() <= bound
    assert nn.Conv3d(8, 16, 1).weight.shape == (1, 8, 16)


def test_conv3d_dataflow_travels_with_the_state_dict():
    conv = nn.Conv3d(3, 4, dataflow="gather_scatter")
    fresh = nn.Conv3d(3, 4)
    fresh.load_state_dict(conv.state_dict())
    assert fresh.dataflow == "gather_scatter"
    x = random_tensor(dtype=torch.float32)
    torch.testing.assert_close(fresh(x).feats, conv(x).feats)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"in_channels": 0, "out_channels": 4}, "in_channels must be a positive int"),
        ({"in_channels": 3, "out_channels": 2.0}, "out_channels must be a positive int"),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 0}, "kernel_size must be >= 1"),
        ({"in_channels": 3, "out_channels": 4, "generative": True}, "generative=True needs transposed=True"),
        ({"in_channels": 3, "out_channels": 4, "sites": "ceil"}, r"sites must be one of \('dense', 'floor'\), got 'ceil'"),
        ({"in_channels": 3, "out_channels": 4, "dataflow": "winograd"}, "dataflow must be None or one of"),
    ],
)
def test_conv3d_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv3d(**kwargs)


def test_conv3d_rejects_wrong_input_channels():
    with pytest.raises(ValueError, match=r"weight must have shape \[27, 3, C_out\]"):
        nn.Conv3d(5, 4).double()(random_tensor())


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_torch_on_feats(train):
    x = random_tensor(channels=6)
    ours, ref = nn.BatchNorm(6).double(), torch.nn.BatchNorm1d(6).double()
    with torch.no_grad():
        ours.running_mean.uniform_(-1, 1)
        ours.running_var.uniform_(0.5, 2)
        ours.weight.uniform_(0.5, 2)
        ours.bias.uniform_(-1, 1)
    ref.load_state_dict(ours.state_dict())
    ours.train(train)
    ref.train(train)
    out = ours(x)
    assert out.coordinate_map is x.coordinate_map
    torch.testing.assert_close(out.feats, ref(x.feats))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)


@pytest.mark.parametrize(
    "module, function", [(nn.ReLU(), torch.relu), (nn.LeakyReLU(0.1), lambda t: torch.nn.functional.leaky_relu(t, 0.1))]
)
def test_activations(module, function):
    x = random_tensor()
    out = module(x)
    assert out.coordinate_map is x.coordinate_map and out.levels is x.levels
    torch.testing.assert_close(out.feats, function(x.feats))


def test_cat_on_a_shared_map():
    x = random_tensor(channels=2)
    y = nn.ReLU()(x)
    out = nn.cat(x, y, x)
    assert out.coordinate_map is x.coordinate_map
    torch.testing.assert_close(out.feats, torch.cat([x.feats, y.feats, x.feats], 1))


def test_cat_reorders_the_same_sites_given_in_another_order():
    x = random_tensor(channels=2)
    perm = torch.randperm(x.num_sites, generator=torch.Generator().manual_seed(1))
    shuffled = pe.SparseTensor(x.feats[perm] * 2, x.coords[perm])
    out = nn.cat(x, shuffled)
    torch.testing.assert_close(out.feats, torch.cat([x.feats, x.feats * 2], 1))


def test_cat_rejects_other_sites_and_strides():
    x = random_tensor(channels=2)
    fewer = pe.SparseTensor(x.feats[1:], x.coords[1:])
    with pytest.raises(ValueError, match="cat: argument 1 holds other sites"):
        nn.cat(x, fewer)
    moved = x.coords.clone()
    moved[:, 1] += 100
    with pytest.raises(ValueError, match="cat: argument 1 holds other sites"):
        nn.cat(x, pe.SparseTensor(x.feats, moved))
    with pytest.raises(ValueError, match=r"cat: argument 1 has stride \(2, 2, 2\), expected \(1, 1, 1\)"):
        nn.cat(x, pe.SparseTensor(x.feats, x.coords, stride=2))
    with pytest.raises(ValueError, match="at least one"):
        nn.cat()


@pytest.mark.parametrize("module, reduce", [(nn.GlobalAvgPool(), torch.mean), (nn.GlobalMaxPool(), torch.amax)])
def test_global_pooling_matches_a_per_batch_loop(module, reduce):
    x = random_tensor(n=200, channels=4, batches=3)
    batch = x.coords[:, 0]
    expected = torch.stack([reduce(x.feats[batch == b], 0) for b in range(3)])
    torch.testing.assert_close(module(x), expected)


def test_global_pooling_leaves_an_empty_batch_at_zero():
    coords = torch.tensor([[0, 0, 0, 0], [2, 1, 0, 0]], dtype=torch.int32)
    x = pe.SparseTensor(torch.tensor([[1.0, -2.0], [-3.0, -4.0]]), coords)
    torch.testing.assert_close(nn.GlobalMaxPool()(x), torch.tensor([[1.0, -2.0], [0.0, 0.0], [-3.0, -4.0]]))
    torch.testing.assert_close(nn.GlobalAvgPool()(x), torch.tensor([[1.0, -2.0], [0.0, 0.0], [-3.0, -4.0]]))


def test_to_dense_scatters_every_site():
    x = random_tensor(channels=2)
    grid = nn.ToDense(origin=(-4, -4, -4), spatial_shape=(7, 7, 7))(x)
    assert grid.shape == (x.batch_size, 2, 7, 7, 7)
    b, xyz = x.coords[:, 0].long(), x.coords[:, 1:].long() + 4
    torch.testing.assert_close(grid[b, :, xyz[:, 0], xyz[:, 1], xyz[:, 2]], x.feats)
    assert grid.abs().sum() == pytest.approx(x.feats.abs().sum().item())
