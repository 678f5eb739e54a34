"""pointengine.compat.torchsparse: TorchSparse 2.x code run unchanged through alias_torchsparse().

The acceptance test writes a small U-Net the way TorchSparse's examples do and checks it against the
same network built from pointengine's modules, its weights converted by load_checkpoint. The conv
kernel order is checked against a brute-force sum written from TorchSparse's offset formula."""

import itertools
import sys

import numpy as np
import pytest
import torch

import pointengine as pe
from pointengine.compat import alias_torchsparse
from pointengine.models import load_checkpoint


@pytest.fixture
def ts():
    """`import torchsparse` resolving to the compatibility package, undone afterwards."""
    saved = {name: module for name, module in sys.modules.items() if name.split(".")[0] == "torchsparse"}
    alias_torchsparse()
    import torchsparse

    yield torchsparse
    for name in [name for name in sys.modules if name.split(".")[0] == "torchsparse"]:
        del sys.modules[name]
    sys.modules.update(saved)


# --- the acceptance network, in TorchSparse 2.x style --------------------------------------------


def torchsparse_unet(in_channels: int, widths, num_classes: int):
    import torchsparse
    import torchsparse.nn as spnn
    from torch import nn

    class ConvBlock(nn.Module):
        def __init__(self, inc, outc, ks=3, stride=1, padding=0, transposed=False):
            super().__init__()
            self.net = nn.Sequential(
                spnn.Conv3d(inc, outc, ks, stride=stride, padding=padding, transposed=transposed),
                spnn.BatchNorm(outc),
                spnn.ReLU(True),
            )

        def forward(self, x):
            return self.net(x)

    class ResidualBlock(nn.Module):
        def __init__(self, inc, outc):
            super().__init__()
            self.net = nn.Sequential(
                spnn.Conv3d(inc, outc, 3), spnn.BatchNorm(outc), spnn.ReLU(True), spnn.Conv3d(outc, outc, 3), spnn.BatchNorm(outc)
            )
            self.downsample = nn.Identity() if inc == outc else nn.Sequential(spnn.Conv3d(inc, outc, 1), spnn.BatchNorm(outc))
            self.relu = spnn.ReLU(True)

        def forward(self, x):
            return self.relu(self.net(x) + self.downsample(x))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            c0, c1, c2, c3, c4 = widths
            self.stem = nn.Sequential(spnn.Conv3d(in_channels, c0, 3), spnn.BatchNorm(c0), spnn.ReLU(True))
            self.stage1 = nn.Sequential(ConvBlock(c0, c0, 2, 2), ResidualBlock(c0, c1))
            self.stage2 = nn.Sequential(ConvBlock(c1, c1, 3, 2, padding=1), ResidualBlock(c1, c2))
            self.dec1 = nn.ModuleList([ConvBlock(c2, c3, 3, 2, transposed=True), ResidualBlock(c3 + c1, c3)])
            self.dec2 = nn.ModuleList([ConvBlock(c3, c4, 2, 2, transposed=True), ResidualBlock(c4 + c0, c4)])
            self.classifier = nn.Linear(c4, num_classes)

        def forward(self, x):
            x0 = self.stem(x)
            x1 = self.stage1(x0)
            x2 = self.stage2(x1)
            y1 = self.dec1[1](torchsparse.cat([self.dec1[0](x2), x1]))
            y2 = self.dec2[1](torchsparse.cat([self.dec2[0](y1), x0]))
            return self.classifier(y2.F)

    return UNet()


def pointengine_unet(in_channels: int, widths, num_classes: int):
    """The same network from pointengine's modules (pointengine's weight layout)."""
    from torch import nn

    def block(inc, outc, ks=3, stride=1, transposed=False, sites="dense"):
        return nn.Sequential(pe.nn.Conv3d(inc, outc, ks, stride, transposed=transposed, sites=sites), pe.nn.BatchNorm(outc), pe.nn.ReLU())

    class Residual(nn.Module):
        def __init__(self, inc, outc):
            super().__init__()
            self.main = nn.Sequential(pe.nn.Conv3d(inc, outc, 3), pe.nn.BatchNorm(outc), pe.nn.ReLU(), pe.nn.Conv3d(outc, outc, 3), pe.nn.BatchNorm(outc))
            self.shortcut = nn.Identity() if inc == outc else nn.Sequential(pe.nn.Conv3d(inc, outc, 1), pe.nn.BatchNorm(outc))

        def forward(self, x):
            main = self.main(x)
            return main.replace_feats((main.feats + self.shortcut(x).feats).relu())

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            c0, c1, c2, c3, c4 = widths
            self.stem = block(in_channels, c0)
            self.stage1 = nn.Sequential(block(c0, c0, 2, 2), Residual(c0, c1))
            self.stage2 = nn.Sequential(block(c1, c1, 3, 2), Residual(c1, c2))
            self.dec1 = nn.ModuleList([block(c2, c3, 3, 2, transposed=True), Residual(c3 + c1, c3)])
            self.dec2 = nn.ModuleList([block(c3, c4, 2, 2, transposed=True), Residual(c4 + c0, c4)])
            self.classifier = nn.Linear(c4, num_classes)

        def forward(self, x):
            x0 = self.stem(x)
            x1 = self.stage1(x0)
            x2 = self.stage2(x1)
            y1 = self.dec1[1](pe.nn.cat(self.dec1[0](x2), x1))
            y2 = self.dec2[1](pe.nn.cat(self.dec2[0](y1), x0))
            return self.classifier(y2.feats)

    return UNet()


def randomize_statistics(model: torch.nn.Module, generator: torch.Generator) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(module.num_features, generator=generator) * 0.1)


def scan(seed: int, n: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.uniform(-2.0, 2.0, (n, 3)), rng.uniform(0, 1, (n, 1))], 1).astype(np.float32)


def test_acceptance_unet_matches_pointengine_modules(ts):
    from torchsparse import SparseTensor
    from torchsparse.utils.collate import sparse_collate_fn
    from torchsparse.utils.quantize import sparse_quantize

    voxel_size, widths = 0.25, (8, 12, 16, 12, 8)
    samples = []
    for seed in (0, 1):
        points = scan(seed)
        coords, index = sparse_quantize(points[:, :3], voxel_size, return_index=True)
        samples.append({"lidar": SparseTensor(points[index], coords), "label": np.full(3, seed)})
    batch = sparse_collate_fn(samples)
    assert batch["label"].tolist() == [[0, 0, 0], [1, 1, 1]]

    generator = torch.Generator().manual_seed(0)
    theirs = torchsparse_unet(4, widths, 5)
    randomize_statistics(theirs, generator)
    ours = pointengine_unet(4, widths, 5)
    report = load_checkpoint(ours, theirs.state_dict(), layout="torchsparse")
    assert any(c.change for c in report.converted)  # 3x3x3 kernels were reordered
    theirs.eval(), ours.eval()

    # Our input built independently of sparse_quantize / sparse_collate: numpy's unique rows.
    coords, feats = [], []
    for b, seed in enumerate((0, 1)):
        points = scan(seed)
        grid = np.floor(points[:, :3].astype(np.float64) / voxel_size).astype(np.int32)
        sites, first = np.unique(grid, axis=0, return_index=True)
        coords.append(np.concatenate([np.full((len(sites), 1), b, np.int32), sites], 1))
        feats.append(points[first])
    reference_input = pe.SparseTensor(torch.from_numpy(np.concatenate(feats)), torch.from_numpy(np.concatenate(coords)))
    assert torch.equal(batch["lidar"].C, reference_input.coords)

    with torch.no_grad():
        got, expected = theirs(batch["lidar"]), ours(reference_input)
    relative = float((got - expected).norm() / expected.norm())
    assert relative <= 1e-5, relative
    assert expected.abs().max() > 0.1  # a network that computes something


# --- the conv's kernel layout against a brute force written from TorchSparse's offset rule ---------


def torchsparse_offsets(kernel_size: int):
    """TorchSparse's kernel order: odd volumes x fastest from -(k//2), even volumes x slowest from 0."""
    axis = range(-(kernel_size // 2), kernel_size // 2 + 1) if kernel_size % 2 else range(kernel_size)
    if kernel_size % 2:
        return [(x, y, z) for z in axis for y in axis for x in axis]
    return [(x, y, z) for x in axis for y in axis for z in axis]


def brute_force(coords, feats, kernel, kernel_size, stride, out_sites):
    """out[o] = sum_k feats[o * stride + off_k] @ kernel[k], with dicts."""
    rows = {tuple(c): i for i, c in enumerate(coords.tolist())}
    out = torch.zeros(len(out_sites), kernel.shape[-1], dtype=torch.float64)
    for j, (b, *o) in enumerate(out_sites):
        for k, off in enumerate(torchsparse_offsets(kernel_size)):
            i = rows.get((b, *(a * stride + d for a, d in zip(o, off))))
            if i is not None:
                out[j] += feats[i] @ kernel[k]
    return out


@pytest.mark.parametrize(
    "kernel_size,stride,padding,mode", [(3, 1, 0, None), (2, 2, 0, None), (3, 2, 1, None), (1, 1, 0, None), (3, 2, 0, "minkowski")]
)
def test_conv_kernel_layout_brute_force(ts, kernel_size, stride, padding, mode):
    import torchsparse.nn as spnn
    import torchsparse.nn.functional as F

    g = torch.Generator().manual_seed(kernel_size * 10 + stride)
    coords = torch.unique(torch.cat([torch.randint(0, 2, (40, 1), generator=g), torch.randint(-3, 4, (40, 3), generator=g)], 1), dim=0).int()
    feats = torch.randn(len(coords), 3, generator=g, dtype=torch.float64)
    config = None if mode is None else {"downsample_mode": mode}
    conv = spnn.Conv3d(3, 4, kernel_size, stride=stride, padding=padding, config=config).double()
    expected_shape = (3, 4) if kernel_size == 1 else (kernel_size**3, 3, 4)
    assert tuple(conv.kernel.shape) == expected_shape and [n for n, _ in conv.named_parameters()] == ["kernel"]
    out = conv(ts.SparseTensor(feats, coords))
    if stride == 1:
        sites = coords.tolist()
    elif mode == "minkowski":  # TorchSparse 2.0's rule: floor(c / s)
        sites = {(b, *(c // stride for c in xyz)) for b, *xyz in coords.tolist()}
    else:  # the sites a dense conv reaches (with the centring padding): floor(c / 2) for 2x2x2
        reach = range(-(kernel_size // 2), kernel_size // 2 + 1) if kernel_size % 2 else range(kernel_size)
        sites = {(b, *((c - d) // stride for c, d in zip(xyz, off))) for b, *xyz in coords.tolist() for off in itertools.product(reach, repeat=3)
                 if all((c - d) % stride == 0 for c, d in zip(xyz, off))}
    assert sorted(map(tuple, out.C.tolist())) == sorted(map(tuple, sites))
    kernel = conv.kernel.detach().reshape(-1, 3, 4)
    expected = brute_force(coords, feats, kernel, kernel_size, stride, out.C.tolist())
    torch.testing.assert_close(out.F, expected, rtol=1e-12, atol=1e-12)
    assert isinstance(out, ts.SparseTensor)
    functional = F.conv3d(ts.SparseTensor(feats, coords), conv.kernel, kernel_size, stride=stride, padding=padding, config=config)
    assert torch.equal(functional.F, out.F) and torch.equal(functional.C, out.C)


def test_state_dict_loads_and_gradients_reach_kernel(ts):
    import torchsparse.nn as spnn

    conv, strided_1x1 = spnn.Conv3d(2, 3, 3, bias=True), spnn.Conv3d(2, 3, 1, stride=2)
    assert tuple(strided_1x1.kernel.shape) == (1, 2, 3)  # 2.1's shape; 2.0 stored [C_in, C_out]
    strided_1x1.load_state_dict({"kernel": torch.ones(2, 3)})
    assert torch.equal(strided_1x1.kernel, torch.ones(1, 2, 3))
    state = {"kernel": torch.randn(27, 2, 3), "bias": torch.randn(3)}
    conv.load_state_dict(state)
    x = ts.SparseTensor(torch.randn(5, 2, dtype=torch.float64), torch.tensor([[0, i, 0, 0] for i in range(5)]).int())
    conv.double()
    out = conv(x)
    out.F.sum().backward()
    assert conv.kernel.grad is not None and conv.kernel.grad.abs().sum() > 0
    with torch.no_grad():  # the cached reordered kernel follows an in-place change
        first = conv(x).F.clone()
        conv.kernel.mul_(2)
        torch.testing.assert_close(conv(x).F - conv.bias, 2 * (first - conv.bias))


# --- tensors, utils, modules -------------------------------------------------------------------


def test_sparse_quantize_matches_numpy(ts):
    from torchsparse.utils.quantize import sparse_quantize

    points = np.random.default_rng(3).uniform(-3, 3, (500, 3))
    coords, index, inverse = sparse_quantize(points, 0.7, return_index=True, return_inverse=True)
    grid = np.floor(points / 0.7).astype(np.int32)
    sites, first, back = np.unique(grid, axis=0, return_index=True, return_inverse=True)
    assert coords.dtype == np.int32 and np.array_equal(coords, sites)
    assert np.array_equal(index, first) and np.array_equal(inverse, back.reshape(-1))
    assert np.array_equal(sparse_quantize(points, 0.7), sites)


def test_sparse_collate(ts):
    from torchsparse.utils.collate import sparse_collate

    a = ts.SparseTensor(np.ones((2, 1), np.float32), np.array([[1, 2, 3], [4, 5, 6]]))
    b = ts.SparseTensor(torch.zeros(1, 1), torch.tensor([[1, 2, 3]]))
    batch = sparse_collate([a, b])
    assert batch.C.tolist() == [[0, 1, 2, 3], [0, 4, 5, 6], [1, 1, 2, 3]] and batch.F.tolist() == [[1], [1], [0]]
    with pytest.raises(ValueError, match="one sample"):
        sparse_collate([batch])


def test_sparse_tensor_api(ts):
    coords = torch.tensor([[0, 0, 0, 0], [0, 1, 0, 0], [1, 2, 1, 0]], dtype=torch.int32)
    x = ts.SparseTensor(torch.arange(6.0).reshape(3, 2), coords, stride=2, spatial_range=(2, 3, 2, 1))
    assert x.s == x.stride == (2, 2, 2) and x.C is x.coords and x.F is x.feats
    shuffled = ts.SparseTensor(x.F[[2, 0, 1]], coords[[2, 0, 1]], stride=2)
    assert (x + shuffled).F.tolist() == [[0, 2], [4, 6], [8, 10]]
    with pytest.raises(ValueError, match="same sites"):
        x + ts.SparseTensor(x.F[:2], coords[:2], stride=2)
    dense = x.dense()
    assert dense.shape == (2, 3, 2, 1, 2) and dense[1, 2, 1, 0].tolist() == [4, 5] and dense.sum() == 15
    x.F = torch.zeros(3, 2)
    assert x.feats.sum() == 0
    assert x.half() is x and x.F.dtype == torch.float16 and x.cpu() is x and x.to(torch.float32) is x


def test_norms_crop_and_functional(ts):
    import torchsparse.nn as spnn
    import torchsparse.nn.functional as F

    g = torch.Generator().manual_seed(5)
    coords = torch.tensor([[b, i, 0, 0] for b in (0, 1) for i in range(6)], dtype=torch.int32)
    x = ts.SparseTensor(torch.randn(12, 4, generator=g, dtype=torch.float64), coords)
    for norm, groups in ((spnn.InstanceNorm(4), 4), (spnn.GroupNorm(2, 4), 2)):
        out = norm.double()(x).F
        for b in (0, 1):
            part = x.F[6 * b : 6 * b + 6].reshape(6, groups, -1)
            mean, var = part.mean((0, 2), keepdim=True), part.var((0, 2), unbiased=False, keepdim=True)
            torch.testing.assert_close(out[6 * b : 6 * b + 6], ((part - mean) / (var + 1e-5).sqrt()).reshape(6, 4))
    cropped = spnn.SparseCrop((1, 0, 0), (4, 1, 1))(x)
    assert cropped.C[:, 1].tolist() == [1, 2, 3, 1, 2, 3] and torch.equal(cropped.F, x.F[[1, 2, 3, 7, 8, 9]])
    assert spnn.SiLU()(x).F.allclose(torch.nn.functional.silu(x.F)) and F.relu(x).F.min() >= 0
    assert torch.equal(spnn.GlobalMaxPool()(x), torch.stack([x.F[:6].amax(0), x.F[6:].amax(0)]))

    idx = torch.tensor([0, 2, 2, -1, 0])
    counts = F.spcount(idx, 3)
    assert counts.tolist() == [2, 0, 2]
    point_feats = torch.randn(5, 2, generator=g)
    voxel = F.spvoxelize(point_feats, idx, counts)
    torch.testing.assert_close(voxel, torch.stack([point_feats[[0, 4]].mean(0), torch.zeros(2), point_feats[[1, 2]].mean(0)]))
    corners = torch.full((5, 8), -1)
    corners[:, 0], corners[:, 1] = idx, torch.tensor([1, 1, 0, 2, -1])
    weights = torch.rand(5, 8, generator=g)
    expected = torch.stack([sum(weights[p, c] * voxel[corners[p, c]] for c in range(8) if corners[p, c] >= 0) for p in range(5)])
    torch.testing.assert_close(F.spdevoxelize(voxel, corners, weights), expected)


def test_every_listed_name_exists(ts):
    import torchsparse.nn as spnn
    import torchsparse.nn.functional as F
    import torchsparse.utils.collate
    import torchsparse.utils.quantize

    for module, names in (
        (ts, ["SparseTensor", "PointTensor", "cat", "nn", "utils"]),
        (spnn, ["Conv3d", "BatchNorm", "InstanceNorm", "GroupNorm", "ReLU", "LeakyReLU", "SiLU", "GlobalAvgPool", "GlobalMaxPool", "SparseCrop"]),
        (F, ["conv3d", "spvoxelize", "spdevoxelize", "spcount", "initial_voxelize", "point_to_voxel", "voxel_to_point"]),
        (torchsparse.utils.quantize, ["sparse_quantize"]),
        (torchsparse.utils.collate, ["sparse_collate", "sparse_collate_fn"]),
    ):
        assert all(hasattr(module, name) for name in names), module
    assert sys.modules["torchsparse.nn"] is spnn and spnn.__name__ == "pointengine.compat.torchsparse.nn"


@pytest.mark.parametrize("path,name", [("torchsparse", "backends"), ("torchsparse.nn", "ToBEVConvolution"), ("torchsparse.nn.functional", "sphash"), ("torchsparse.utils", "make_ntuple")])
def test_unsupported_names_raise_not_implemented(ts, path, name):
    module = sys.modules[path]
    with pytest.raises(NotImplementedError, match=rf"{path}\.{name} is not supported.*porting_from_torchsparse\.md"):
        getattr(module, name)
    assert not hasattr(module, "no_such_name")


def test_unsupported_arguments(ts):
    import torchsparse.nn as spnn

    with pytest.raises(NotImplementedError, match="padding.*porting_from_torchsparse"):
        spnn.Conv3d(2, 2, 3, stride=2)  # TorchSparse 2.1's padding 0: sites shifted from ours
    assert spnn.Conv3d(2, 2, 3, stride=2, config={"downsample_mode": "minkowski"}).sites == "floor"
    with pytest.raises(NotImplementedError, match="kernel_size"):
        spnn.Conv3d(2, 2, 4)


def test_point_tensor_and_point_voxel_helpers(ts):
    import torchsparse.nn.functional as F

    coords = torch.tensor([[0, 0.5, 0.5, 0.5]] * 3 + [[1, 2.2, 0.1, 0.3]] * 3)
    z = ts.PointTensor(torch.rand(6, 2, generator=torch.Generator().manual_seed(1)), coords)
    x = F.initial_voxelize(z)
    assert isinstance(x, ts.SparseTensor) and x.C.tolist() == [[0, 0, 0, 0], [1, 2, 0, 0]]
    torch.testing.assert_close(x.F, torch.stack([z.F[:3].mean(0), z.F[3:].mean(0)]))
    back = F.voxel_to_point(x, z)  # each point's only existing corner is its own voxel: weight 1
    assert isinstance(back, ts.PointTensor) and torch.equal(back.F, x.F[[0, 0, 0, 1, 1, 1]])
    assert torch.equal((z + back).F, z.F + back.F)
    again = F.point_to_voxel(x, back)
    assert isinstance(again, ts.SparseTensor) and torch.allclose(again.F, x.F)
    with pytest.raises(ValueError, match="idx_query"):
        ts.PointTensor(z.F, coords, idx_query=torch.zeros(6))


def test_alias_refuses_a_real_torchsparse():
    saved = sys.modules.get("torchsparse")
    sys.modules["torchsparse"] = type(sys)("torchsparse")
    try:
        with pytest.raises(ImportError, match="real torchsparse is already imported"):
            alias_torchsparse()
    finally:
        del sys.modules["torchsparse"]
        if saved is not None:
            sys.modules["torchsparse"] = saved
