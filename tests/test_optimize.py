"""pointengine.optimize: BatchNorm folded into the convs, ReLU and residual adds in their epilogue.
The optimized model computes what the eval-mode model computes (MinkUNet and SPVCNN with random
statistics and affine parameters, the demo model on a real scan), leaves the model it was given as it
was, and keeps each layer's dataflow."""

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.models import SPVCNN, MinkUNet
from pointengine.models.blocks import FusedResidualBlock, ResidualBlock
from pointengine.testing import random_points, random_sites, randomize_batchnorm, relative_error


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random running statistics and affine parameters in every BatchNorm, so that folding shows."""
    randomize_batchnorm(model, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d) and module.affine:
                module.weight.copy_(torch.rand(module.num_features, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(module.num_features, generator=gen) * 0.4 - 0.2)
    return model.eval()


def sparse_input(n: int = 3000, channels: int = 4, seed: int = 0, dtype=torch.float32) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, 30, gen)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen, dtype=dtype), coords)


def count(model: torch.nn.Module, kind: type) -> int:
    return sum(type(module) is kind for module in model.modules())


def test_minkunet_equals_the_eval_model():
    model = randomized(MinkUNet(4, 19, cr=0.5))
    optimized = pe.optimize(model)
    assert count(optimized, nn.BatchNorm) == 0 and count(optimized, nn.ReLU) == 0
    assert count(optimized, FusedResidualBlock) == count(model, ResidualBlock)
    # Every Conv3d had a BatchNorm after it.
    assert count(optimized, nn.FusedConv3d) == count(model, nn.Conv3d)
    x = sparse_input()
    with torch.no_grad():
        expected, out = model(x).feats, optimized(pe.SparseTensor(x.feats, x.coords)).feats
    assert relative_error(out, expected) <= 1e-5


def test_spvcnn_equals_the_eval_model():
    model = randomized(SPVCNN(4, 19, cr=0.5), seed=3)
    optimized = pe.optimize(model)
    assert count(optimized, nn.BatchNorm) == 0
    gen = torch.Generator().manual_seed(4)
    coords = random_points(3000, 2, 24.0, gen, low=-12.0)
    feats = torch.randn(3000, 4, generator=gen)
    with torch.no_grad():
        expected = model(pe.PointTensor(feats, coords)).feats
        out = optimized(pe.PointTensor(feats, coords)).feats
    assert relative_error(out, expected) <= 1e-5


def test_the_given_model_is_left_as_it_was():
    model = randomized(MinkUNet(4, 19, cr=0.25)).train()
    before = {name: value.clone() for name, value in model.state_dict().items() if isinstance(value, torch.Tensor)}
    optimized = pe.optimize(model)
    assert model.training and not optimized.training
    assert count(model, nn.BatchNorm) > 0
    after = model.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())


def test_chains_fold_in_float64_with_conv_bias_plain_batchnorm_and_other_activations():
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        nn.Conv3d(3, 8, 3, bias=True, dataflow="gather_scatter"),
        nn.BatchNorm(8, affine=False),
        nn.ReLU(),
        nn.Conv3d(8, 6, 2, stride=2),
        nn.BatchNorm(6),
        nn.LeakyReLU(0.1),
        nn.Conv3d(6, 5, 2, stride=2, transposed=True),
        nn.BatchNorm(5),
    ).double()
    randomized(model, seed=5)
    optimized = pe.optimize(model)
    kinds = [type(module) for module in optimized]
    assert kinds == [nn.FusedConv3d, nn.FusedConv3d, nn.LeakyReLU, nn.FusedConv3d]
    assert [layer.relu for layer in optimized if isinstance(layer, nn.FusedConv3d)] == [True, False, False]
    assert optimized[0].dataflow == "gather_scatter" and optimized[0].weight.dtype == torch.float64
    x = sparse_input(n=400, channels=3, seed=6, dtype=torch.float64)
    with torch.no_grad():
        expected, out = model(x), optimized(pe.SparseTensor(x.feats, x.coords))
    assert torch.equal(out.coords, expected.coords)
    assert relative_error(out.feats, expected.feats) <= 1e-12


def test_state_dict_loads_into_an_optimized_fresh_model():
    model = randomized(MinkUNet(4, 7, cr=0.25), seed=7)
    optimized = pe.optimize(model)
    fresh = pe.optimize(MinkUNet(4, 7, cr=0.25))
    fresh.load_state_dict(optimized.state_dict())
    x = sparse_input(n=1000, seed=8)
    with torch.no_grad():
        assert torch.equal(fresh(x).feats, optimized(pe.SparseTensor(x.feats, x.coords)).feats)


def test_the_demo_model_on_a_real_scan(kitti_scan):
    segmenter = pe.Segmenter()
    expected = segmenter(kitti_scan, return_logits=True)
    segmenter.model = pe.optimize(segmenter.model)
    labels, logits = segmenter(kitti_scan, return_logits=True)
    assert relative_error(logits, expected[1]) <= 1e-5
    # A label may differ only where the two best classes are closer than that error.
    top2 = expected[1].topk(2, dim=1).values
    differ = labels != expected[0]
    assert (top2[differ, 0] - top2[differ, 1] <= 1e-5 * expected[1].abs().max()).all()


def test_bad_models():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        pe.optimize("minkunet")
    model = torch.nn.Sequential(nn.Conv3d(3, 4, 3), nn.BatchNorm(4, track_running_stats=False))
    with pytest.raises(ValueError, match="BatchNorm folding needs running statistics"):
        pe.optimize(model)
