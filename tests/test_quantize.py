"""pointengine.compress.quantize: int8 and bfloat16 sparse convolutions in place of an optimized
model's float ones. Each layer is checked against a float64 computation of what it holds (its integer
or bfloat16 weights and its input rounded the same way); whole models against the float model."""

import pytest
import torch

import pointengine as pe
from pointengine import nn
from pointengine.compress import quantize
from pointengine.functional import conv as F
from pointengine.models import SPVCNN, MinkUNet
from pointengine.nn.quantized import BFloat16Conv3d, Int8Conv3d, activation_quantization
from pointengine.testing import random_points, random_sites, randomize_batchnorm, relative_error


def sparse_input(n: int = 2000, channels: int = 4, seed: int = 0) -> pe.SparseTensor:
    gen = torch.Generator().manual_seed(seed)
    coords = random_sites(n, 2, 24, gen)
    return pe.SparseTensor(torch.randn(len(coords), channels, generator=gen), coords)


def fresh(x: pe.SparseTensor) -> pe.SparseTensor:
    """The same input without the kernel maps an earlier forward cached on it."""
    return pe.SparseTensor(x.feats, x.coords)


def dense_reference(feats: torch.Tensor, weight: torch.Tensor, nbr: torch.Tensor) -> torch.Tensor:
    """sum over offsets k of feats[nbr[:, k]] @ weight[k] in float64, a missing neighbour reading 0."""
    padded = torch.cat([feats.double(), feats.new_zeros(1, feats.shape[1], dtype=torch.float64)])
    rows = torch.where(nbr >= 0, nbr.long(), feats.shape[0])
    return torch.einsum("okc,kcd->od", padded[rows], weight.double())


def layer_reference(layer, x: pe.SparseTensor, residual: torch.Tensor | None) -> torch.Tensor:
    """What `layer` computes from its own weights, in float64 (input rounded as the layer rounds it)."""
    kmap, _ = F.conv_kernel_map(x, layer.kernel_size, layer.stride, layer.dilation, layer.transposed, False, "dense")
    if isinstance(layer, Int8Conv3d):
        scale, zero = layer.input_scale, layer.input_zero
        codes = torch.clamp(torch.round(x.feats.double() / scale) + zero, 0, 127)
        out = dense_reference((codes - zero) * scale, layer.weight.double() * layer.weight_scale.double(), kmap.nbr)
    else:
        out = dense_reference(x.feats.to(torch.bfloat16), layer.weight, kmap.nbr)
    out = out + layer.bias.double()
    if residual is not None:
        out = out + residual.double()
    return out.clamp_min(0) if layer.relu else out


@pytest.mark.parametrize("make", [
    lambda conv: Int8Conv3d(conv, True, *activation_quantization(-2.5, 3.0)),
    lambda conv: Int8Conv3d(conv, False, *activation_quantization(0.0, 3.0)),
    lambda conv: Int8Conv3d(conv, True, *activation_quantization(-2.5, 3.0), weight_bits=7),
    lambda conv: BFloat16Conv3d(conv, True),
])
@pytest.mark.parametrize(
    "c_in, c_out, kernel_size, stride, with_residual",
    [(4, 16, 3, 1, False), (3, 5, 3, 1, True), (16, 32, 2, 2, False), (8, 9, 1, 1, True), (33, 17, 3, 1, True)],
)
def test_layer_matches_float64_reference(make, c_in, c_out, kernel_size, stride, with_residual):
    torch.manual_seed(c_in * 100 + c_out)
    layer = make(nn.FusedConv3d(c_in, c_out, kernel_size, stride))
    x = sparse_input(800, c_in, seed=c_out)
    residual = torch.randn(len(x.feats), c_out) if with_residual else None  # stride 1: the input's sites
    out = layer(x, None if residual is None else x.replace_feats(residual))
    expected = layer_reference(layer, x, residual)
    assert out.feats.dtype == torch.float32 and out.feats.shape == expected.shape
    # int8 sums are exact and bf16 products exact in float32: the rest is float32 rounding.
    bound = (1e-5 if isinstance(layer, Int8Conv3d) else 1e-4) * (expected.abs() + 1)
    assert ((out.feats.double() - expected).abs() <= bound).all()


@pytest.mark.parametrize("weight_bits, top", [(8, 127), (7, 63)])
def test_int8_weights_are_symmetric_per_output_channel(weight_bits, top):
    conv = nn.Conv3d(6, 4, 3)
    with torch.no_grad():
        conv.weight[:, :, 3] = 0  # an all-zero column keeps a usable scale
    layer = Int8Conv3d(conv, False, 1.0, 0, weight_bits)
    assert layer.weight.dtype == torch.int8 and int(layer.weight.abs().max()) == top
    assert torch.equal(layer.weight.abs().amax(dim=(0, 1))[:3], torch.full((3,), top, dtype=torch.int8))
    assert torch.all(layer.weight[:, :, 3] == 0) and layer.weight_scale[3] == 1.0
    error = (layer.weight.float() * layer.weight_scale - conv.weight).abs()
    assert torch.all(error <= layer.weight_scale / 2 + 1e-7)


@pytest.mark.parametrize("low, high, expected", [
    (0.0, 12.7, (0.1, 0)),
    (-1.27, 0.0, (0.01, 127)),
    (-1.0, 1.54, (0.02, 50)),
    (0.5, 2.54, (0.02, 0)),  # widened to hold 0
    (0.0, 0.0, (1.0, 0)),
])
def test_activation_quantization(low, high, expected):
    scale, zero = activation_quantization(low, high)
    assert scale == pytest.approx(expected[0]) and zero == expected[1]


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    randomize_batchnorm(model, seed)
    return model.eval()


@pytest.mark.parametrize("dtype, weight_bits, agreement, error",
                         [("int8", 8, 0.9, 0.1), ("int8", 7, 0.9, 0.1), ("bf16", 8, 0.98, 0.02)])
def test_minkunet_stays_close_to_the_float_model(dtype, weight_bits, agreement, error):
    model = randomized(MinkUNet(4, 19, cr=0.5))
    calibration = [sparse_input(seed=s) for s in (1, 2, 3)]
    quantized = quantize(model, calibration, dtype, weight_bits=weight_bits)
    layers = Int8Conv3d if dtype == "int8" else BFloat16Conv3d
    # Every conv but the one reading the raw point features, which stays float32.
    assert sum(isinstance(m, layers) for m in quantized.modules()) == sum(isinstance(m, nn.Conv3d) for m in model.modules()) - 1
    assert [name for name, m in quantized.named_modules() if isinstance(m, nn.Conv3d)] == ["stem.0.0"]
    x = sparse_input(seed=9)
    with torch.no_grad():
        expected, out = model(fresh(x)).feats, quantized(fresh(x)).feats
    assert relative_error(out, expected) <= error
    assert (out.argmax(1) == expected.argmax(1)).float().mean() >= agreement
    assert not any(isinstance(m, (Int8Conv3d, BFloat16Conv3d, nn.FusedConv3d)) for m in model.modules())  # unchanged


def test_spvcnn_quantizes_with_point_tensor_calibration():
    model = randomized(SPVCNN(4, 19, cr=0.5), seed=2)
    gen = torch.Generator().manual_seed(5)

    def points(n=2000):
        return pe.PointTensor(torch.randn(n, 4, generator=gen), random_points(n, 1, 20.0, gen, low=-10.0))

    quantized = quantize(model, [points(), points()], "int8", method="percentile", percentile=99.9)
    x = points()
    with torch.no_grad():
        expected = model(pe.PointTensor(x.feats, x.coords)).feats
        out = quantized(pe.PointTensor(x.feats, x.coords)).feats
    assert relative_error(out, expected) <= 0.15


def test_narrow_layers_work():
    model = randomized(MinkUNet(4, 3, cr=0.1))  # 3 to 25 channels: below every vector width
    quantized = quantize(model, [sparse_input(seed=1)])
    x = sparse_input(seed=4)
    with torch.no_grad():
        assert relative_error(quantized(fresh(x)).feats, model(fresh(x)).feats) <= 0.15


def test_quantized_model_is_deterministic():
    model = randomized(MinkUNet(4, 19, cr=0.25))
    quantized = quantize(model, [sparse_input(seed=1)])
    x = sparse_input(seed=2)
    with torch.no_grad():
        one, two = quantized(fresh(x)).feats, quantized(fresh(x)).feats
    assert torch.equal(one, two)


def test_bad_calls():
    model = MinkUNet(4, 19, cr=0.25).eval()
    with pytest.raises(ValueError, match="calibration is empty"):
        quantize(model, [])
    for dtype in ("int8", "bf16"):
        with pytest.raises(ValueError, match="needs calibration inputs"):
            quantize(model, None, dtype)
    with pytest.raises(TypeError, match="calibration item 0 must be a model input"):
        quantize(model, [torch.zeros(3, 4)])
    with pytest.raises(ValueError, match="dtype must be one of"):
        quantize(model, [sparse_input()], "int4")
    with pytest.raises(ValueError, match="method must be one of"):
        quantize(model, [sparse_input()], method="mse")
    with pytest.raises(ValueError, match=r"percentile must be in \(50, 100\]"):
        quantize(model, [sparse_input()], method="percentile", percentile=20)
    with pytest.raises(ValueError, match=r"weight_bits must be one of \(7, 8\), got 4"):
        quantize(model, [sparse_input()], weight_bits=4)


@pytest.mark.parametrize("dtype, weight_bits", [("int8", 8), ("int8", 7), ("bf16", 8)])
@pytest.mark.parametrize("pruned", [False, True])
def test_checkpoint_round_trip_and_segmenter(tmp_path, dtype, weight_bits, pruned):
    from pointengine.compress import prune
    from pointengine.datasets import generate_scan
    from pointengine.models.checkpoint import save_checkpoint

    seg = pe.Segmenter("demo")
    model = prune(seg.model, 0.5) if pruned else seg.model
    scan = generate_scan(seed=3).points
    quantized = quantize(model, [seg.preprocess(generate_scan(seed=s).points) for s in (4, 5)], dtype,
                         weight_bits=weight_bits)
    if dtype == "int8":
        assert max(int(m.weight.abs().max()) for m in quantized.modules() if isinstance(m, Int8Conv3d)) == 2 ** (weight_bits - 1) - 1
    path = save_checkpoint(quantized, tmp_path / "q.safetensors", seg.config.to_dict(), training_form=model, precision=dtype)
    loaded = pe.Segmenter(checkpoint=path)
    x = seg.preprocess(scan)
    with torch.no_grad():
        expected = quantized(fresh(x)).feats
        assert torch.equal(loaded.model(fresh(x)).feats, expected)
    labels = loaded(scan)
    assert labels.shape == (len(scan),)
    runner = pe.Segmenter("demo")
    runner.model = quantized
    assert torch.equal(runner(scan), labels)


def test_residual_blocks_pass_codes_between_their_convs():
    from pointengine.models.blocks import FusedResidualBlock

    model = randomized(MinkUNet(4, 19, cr=0.5))
    quantized = quantize(model, [sparse_input(seed=1)])
    blocks = [m for m in quantized.modules() if isinstance(m, FusedResidualBlock)]
    assert blocks and all(b.first.output_quantization == (b.second.input_scale, b.second.input_zero) for b in blocks)
    x = sparse_input(seed=6)
    with torch.no_grad():
        chained = quantized(fresh(x)).feats
        for block in blocks:
            block.first.output_quantization = None  # float32 out, quantized again by the second conv
        assert torch.equal(quantized(fresh(x)).feats, chained)


def test_residual_blocks_pass_bfloat16_between_their_convs():
    from pointengine.models.blocks import FusedResidualBlock

    model = randomized(MinkUNet(4, 19, cr=0.5))
    quantized = quantize(model, [sparse_input(seed=1)], "bf16")
    blocks = [m for m in quantized.modules() if isinstance(m, FusedResidualBlock)]
    assert blocks and all(b.first.bfloat16_output and not b.second.bfloat16_output for b in blocks)
    x = sparse_input(seed=6)
    dtypes = []
    blocks[0].first.register_forward_hook(lambda module, args, out: dtypes.append(out.feats.dtype))
    with torch.no_grad():
        chained = quantized(fresh(x)).feats
        assert dtypes == [torch.bfloat16]
        for block in blocks:
            block.first.bfloat16_output = False  # float32 out, rounded to bfloat16 by the second conv
        assert torch.equal(quantized(fresh(x)).feats, chained)
