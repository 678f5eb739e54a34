"""The sparse convolutions of a quantized model (pointengine.compress.quantize), each one layer of an
optimized model (a FusedConv3d: BatchNorm folded, epilogue relu?(conv + bias + residual)) computed in
lower precision:

- Int8Conv3d: 7-bit activations (uint8 in [0, 127], value = input_scale * (q - input_zero), one scale
  per tensor, calibrated), 8-bit weights (int8 in [-127, 127], one scale per output channel; or 7-bit,
  in [-63, 63]), exact int32 sums, a float32 epilogue; one whose output only feeds another int8 layer
  (the first conv of a residual block) writes that layer's codes directly. Seven-bit activations keep
  AVX2's 16-bit pair sums from saturating, so every CPU path gives the same bits; with 7-bit weights
  as well, AVX2 adds two of those sums in 16 bits before widening, a third fewer multiplies.
- BFloat16Conv3d: bfloat16 activations and weights, float32 sums and epilogue; one whose output only
  feeds another bfloat16 layer writes bfloat16 features, the same bits as that layer's rounding of
  float32 ones, without the float32 rows in between.

Both take and give float32 SparseTensors (but for those codes and bfloat16 features), so they drop
into the optimized model where its convs were.
"""

import torch
from torch import Tensor

from .. import _ops
from ..functional import conv as F
from ..tensor import SparseTensor
from .conv import Conv3d

QMAX = 127  # the largest activation code
WEIGHT_BITS = (7, 8)


def weight_code_max(weight_bits: int) -> int:
    """The largest |weight code| of `weight_bits`-bit symmetric weights (127 or 63); refuses other widths."""
    if weight_bits not in WEIGHT_BITS:
        raise ValueError(f"weight_bits must be one of {WEIGHT_BITS}, got {weight_bits!r}")
    return 2 ** (weight_bits - 1) - 1


class _LowPrecisionConv3d(torch.nn.Module):
    """The geometry and epilogue of a float conv, and the kernel map it reads; subclasses hold the
    weights and compute the features."""

    def __init__(self, conv: Conv3d, relu: bool):
        super().__init__()
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride, self.dilation = conv.kernel_size, conv.stride, conv.dilation
        self.transposed, self.generative, self.sites = conv.transposed, conv.generative, conv.sites
        self.relu = relu

    def forward(self, input: SparseTensor, residual: SparseTensor | None = None) -> SparseTensor:
        if F.is_pointwise(self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2], self.stride, self.generative):
            # Each site reads itself: the one-offset table of a 1x1x1 conv.
            nbr = torch.arange(input.feats.shape[0], dtype=torch.int32, device=input.feats.device)[:, None]
            tiles, coordinate_map, out_stride = None, input.coordinate_map, input.stride
        else:
            kmap, out_stride = F.conv_kernel_map(
                input, self.kernel_size, self.stride, self.dilation, self.transposed, self.generative, self.sites
            )
            nbr, tiles, coordinate_map = kmap.nbr, kmap.cpu_tiles(input.feats), kmap.out_map
        feats = self.compute(input.feats, nbr, tiles, None if residual is None else residual.feats)
        return SparseTensor.derived(feats, coordinate_map, out_stride, input.levels)

    def compute(self, feats: Tensor, nbr: Tensor, tiles: tuple[Tensor, Tensor] | None, residual: Tensor | None) -> Tensor:
        """The output features from the input's, the map's table and tile lists (KernelMap.cpu_tiles)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        if self.stride != (1, 1, 1):
            parts.append(f"stride={self.stride}")
        parts += [name for name in ("transposed", "generative", "relu") if getattr(self, name)]
        return ", ".join(parts)


def _folded(conv: Conv3d) -> tuple[Tensor, Tensor]:
    """(weight [K, C_in, C_out], bias [C_out]) of a float conv in float32, a zero bias where it has none."""
    weight = conv.weight.detach().float()
    bias = torch.zeros(conv.out_channels) if conv.bias is None else conv.bias.detach().float()
    return weight, bias


class Int8Conv3d(_LowPrecisionConv3d):
    """A float conv with int8 weights of `weight_bits` bits, reading activations quantized with
    (input_scale, input_zero)."""

    def __init__(self, conv: Conv3d, relu: bool, input_scale: float, input_zero: int, weight_bits: int = 8):
        super().__init__(conv, relu)
        top = weight_code_max(weight_bits)
        weight, bias = _folded(conv)
        # Symmetric per output channel: the largest |w| of each column becomes 127 (63 with 7 bits).
        peak = weight.abs().amax(dim=(0, 1))
        scale = torch.where(peak > 0, peak / top, torch.ones_like(peak))
        self.register_buffer("weight", torch.round(weight / scale).clamp(-top, top).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("bias", bias)
        self.input_scale, self.input_zero = float(input_scale), int(input_zero)
        # (scale, zero) of the next layer's codes when this layer feeds one int8 layer only: the
        # epilogue then writes those codes (uint8) instead of float32 features.
        self.output_quantization: tuple[float, int] | None = None

    def compute(self, feats: Tensor, nbr: Tensor, tiles: tuple[Tensor, Tensor] | None, residual: Tensor | None) -> Tensor:
        codes = feats if feats.dtype == torch.uint8 else _ops.quantize_u7(feats, self.input_scale, self.input_zero)
        out_scale, out_zero = self.output_quantization or (None, 0)
        return _ops.conv_int8(
            codes, self.input_scale, self.input_zero, self.weight, self.weight_scale, nbr, self.bias, residual, self.relu,
            out_scale, out_zero, tiles,
        )

    # The activation quantization travels with the state dict (in a checkpoint's metadata).
    def get_extra_state(self) -> dict:
        return {"input_scale": self.input_scale, "input_zero": self.input_zero, "relu": self.relu,
                "output_quantization": self.output_quantization}

    def set_extra_state(self, state: dict) -> None:
        self.input_scale, self.input_zero, self.relu = float(state["input_scale"]), int(state["input_zero"]), bool(state["relu"])
        output = state["output_quantization"]
        self.output_quantization = None if output is None else (float(output[0]), int(output[1]))

    def extra_repr(self) -> str:
        return super().extra_repr() + f", input_scale={self.input_scale:.4g}, input_zero={self.input_zero}"


class BFloat16Conv3d(_LowPrecisionConv3d):
    """A float conv with bfloat16 weights; its input is rounded to bfloat16, its sums are float32."""

    def __init__(self, conv: Conv3d, relu: bool):
        super().__init__(conv, relu)
        weight, bias = _folded(conv)
        self.register_buffer("weight", weight.to(torch.bfloat16))
        self.register_buffer("bias", bias)
        self.bfloat16_output = False  # True when this layer feeds one bfloat16 layer only

    def compute(self, feats: Tensor, nbr: Tensor, tiles: tuple[Tensor, Tensor] | None, residual: Tensor | None) -> Tensor:
        return _ops.conv_bf16(
            feats.to(torch.bfloat16), self.weight, nbr, self.bias, residual, self.relu, self.bfloat16_output, tiles
        )

    def get_extra_state(self) -> dict:
        return {"relu": self.relu, "bfloat16_output": self.bfloat16_output}

    def set_extra_state(self, state: dict) -> None:
        # Checkpoints written before bfloat16 outputs existed hold only "relu".
        self.relu, self.bfloat16_output = bool(state["relu"]), bool(state.get("bfloat16_output", False))


def activation_quantization(low: float, high: float) -> tuple[float, int]:
    """(scale, zero) of 7-bit codes covering [low, high] widened to hold 0 (which then has a code of its
    own: missing neighbours and ReLU zeros stay exact). A range that starts at 0 gets zero 0 and all 128
    codes for its values."""
    low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        return 1.0, 0
    scale = (high - low) / QMAX
    return scale, min(max(round(-low / scale), 0), QMAX)
