"""pointengine.compress.quantize: an optimized model whose sparse convolutions compute in int8 or
bfloat16 (pointengine.nn.quantized), the activation ranges of int8 calibrated on sample inputs."""

from collections.abc import Iterable

import torch
from torch import Tensor

from .. import nn
from ..models.blocks import FusedResidualBlock
from ..nn.quantized import BFloat16Conv3d, Int8Conv3d, activation_quantization, weight_code_max
from ..tensor import PointTensor, SparseTensor
from .optimize import fuse, optimize

DTYPES = ("int8", "bf16")
METHODS = ("minmax", "percentile")
# torch.quantile sorts its input: a range is estimated from at most this many evenly spaced values.
QUANTILE_SAMPLE = 1 << 20


def quantize(
    model: torch.nn.Module,
    calibration: Iterable[SparseTensor | PointTensor],
    dtype: str = "int8",
    method: str = "percentile",
    percentile: float = 99.999,
    weight_bits: int = 8,
) -> torch.nn.Module:
    """`optimize(model)` with its sparse convs computing in `dtype`; `model` is not changed.

    The optimized float model runs on `calibration` (inputs of the model: SparseTensor, or PointTensor
    for SPVCNN). The convs that read the model's own input stay float32: raw point features (metres,
    remission) share no scale. int8: weights symmetric per output channel; each conv's input range is
    measured as the `percentile`-th percentile and its mirror per input, widest over the inputs
    ("percentile", clipping rare outliers), or over all the inputs ("minmax"). The default kept 98.3 %
    of the demo model's labels on the real SemanticKITTI scans (minmax 98.0 %, benchmarks/README.md).
    `weight_bits` 7 rounds the weights to [-63, 63], which AVX2 CPUs sum faster (nn.quantized). bf16
    uses the run only to find the first convs.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (isinstance(percentile, (int, float)) and 50 < percentile <= 100):
        raise ValueError(f"percentile must be in (50, 100], got {percentile!r}")
    weight_code_max(weight_bits)  # refused before the calibration runs
    optimized = optimize(model)
    ranges, first = _calibrate(optimized, calibration, method, percentile)
    if dtype == "bf16":
        bf16_model = _replace_convs(optimized, set(ranges), lambda name, conv: BFloat16Conv3d(conv, _relu(conv)))
        return _chain_outputs(bf16_model)

    def int8_conv(name: str, conv: nn.Conv3d) -> Int8Conv3d:
        return Int8Conv3d(conv, _relu(conv), *activation_quantization(*ranges[name]), weight_bits)

    unused = set(_convs(optimized)) - set(ranges) - first
    if unused:
        raise ValueError(f"calibration: {sorted(unused)} saw no input (are they used by the model's forward?)")
    return _chain_outputs(_replace_convs(optimized, set(ranges), int8_conv))


def _chain_outputs(model: torch.nn.Module) -> torch.nn.Module:
    """The first conv of each residual block, read by the second alone, writes what the second reads:
    its int8 codes, or bfloat16 features."""
    for block in model.modules():
        if not isinstance(block, FusedResidualBlock):
            continue
        first, second = block.first, block.second
        if isinstance(first, Int8Conv3d) and isinstance(second, Int8Conv3d):
            first.output_quantization = (second.input_scale, second.input_zero)
        elif isinstance(first, BFloat16Conv3d) and isinstance(second, BFloat16Conv3d):
            first.bfloat16_output = True
    return model


def precision_form(model: torch.nn.Module, dtype: str, layers: set[str]) -> torch.nn.Module:
    """`model` turned in place into what quantize makes of it, with the convs named in `layers` in
    `dtype` and their weights and activation quantization left to a state dict: the model a quantized
    checkpoint loads into (models.load_checkpoint)."""
    if dtype == "bf16":
        return _replace_convs(fuse(model.eval()), layers, lambda name, conv: BFloat16Conv3d(conv, _relu(conv)))
    if dtype == "int8":
        return _replace_convs(fuse(model.eval()), layers, lambda name, conv: Int8Conv3d(conv, _relu(conv), 1.0, 0))
    raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")


def _relu(conv: nn.Conv3d) -> bool:
    return isinstance(conv, nn.FusedConv3d) and conv.relu


def _convs(model: torch.nn.Module) -> dict[str, nn.Conv3d]:
    return {name: module for name, module in model.named_modules() if isinstance(module, nn.Conv3d)}


def _replace_convs(model: torch.nn.Module, names: set[str], make) -> torch.nn.Module:
    """`model` with each conv named in `names` replaced, in place, by make(name, conv)."""
    for name, conv in _convs(model).items():
        if name not in names:
            continue
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, make(name, conv))
    return model


def _calibrate(model: torch.nn.Module, calibration, method: str, percentile: float):
    """(low, high) of the input features of every sparse conv of `model` over the calibration inputs,
    and apart, the names of the convs that read the model's own input."""
    if calibration is None:
        raise ValueError("quantization needs calibration inputs (an iterable of SparseTensor), got None")
    ranges: dict[str, tuple[float, float]] = {}
    reads_input: set[str] = set()

    def observe(name: str):
        def hook(module, args):
            if args[0].feats is model_input.feats:
                reads_input.add(name)
            low, high = _range(args[0].feats, method, percentile, name)
            old = ranges.get(name, (low, high))
            ranges[name] = (min(old[0], low), max(old[1], high))

        return hook

    handles = [conv.register_forward_pre_hook(observe(name)) for name, conv in _convs(model).items()]
    seen = 0
    try:
        with torch.no_grad():
            for i, model_input in enumerate(calibration):
                if not isinstance(model_input, (SparseTensor, PointTensor)):
                    raise TypeError(
                        f"calibration item {i} must be a model input (SparseTensor or PointTensor), "
                        f"got {type(model_input).__name__}"
                    )
                model(model_input)
                seen += 1
    finally:
        for handle in handles:
            handle.remove()
    if seen == 0:
        raise ValueError("calibration is empty: quantization needs at least one SparseTensor input")
    return {name: value for name, value in ranges.items() if name not in reads_input}, reads_input


def _range(feats: Tensor, method: str, percentile: float, name: str) -> tuple[float, float]:
    values = feats.detach().float().reshape(-1)
    if values.numel() == 0:
        return 0.0, 0.0
    low, high = torch.aminmax(values)
    if not (torch.isfinite(low) and torch.isfinite(high)):
        raise ValueError(f"calibration: the input of {name!r} holds NaN or infinite values")
    if method == "minmax":
        return float(low), float(high)
    step = max(1, values.numel() // QUANTILE_SAMPLE)
    q = torch.tensor([1 - percentile / 100, percentile / 100])
    low, high = torch.quantile(values[::step], q).tolist()
    return low, high
