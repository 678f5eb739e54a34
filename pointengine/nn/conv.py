"""Conv3d: a sparse convolution layer holding its weight [K, C_in, C_out] and its dataflow choice."""

import math

import torch

from ..functional import conv as F
from ..functional.kmap import KernelMap
from ..tensor import SparseTensor


def _check_channels(value, name: str) -> int:
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class Conv3d(torch.nn.Module):
    """Sparse 3D convolution (see `pointengine.functional.conv3d` for what it computes).

    `weight` is [K, C_in, C_out] with K in `kernel_offsets(kernel_size, dilation)` order (x slowest).
    `dataflow` is this layer's choice (one of functional.DATAFLOWS, or None for `select_dataflow`); an
    autotuner may overwrite it, and it travels in the state dict as extra state.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size=3,
        stride=1,
        dilation=1,
        bias: bool = False,
        transposed: bool = False,
        generative: bool = False,
        sites: str = "dense",
        dataflow: str | None = None,
    ):
        super().__init__()
        self.in_channels = _check_channels(in_channels, "in_channels")
        self.out_channels = _check_channels(out_channels, "out_channels")
        self.kernel_size, self.stride, self.dilation = F.conv_geometry(kernel_size, stride, dilation, transposed, generative, sites)
        self.transposed, self.generative, self.sites = transposed, generative, sites
        self.dataflow = dataflow
        volume = math.prod(self.kernel_size)
        self.weight = torch.nn.Parameter(torch.empty(volume, in_channels, out_channels))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def dataflow(self) -> str | None:
        return self._dataflow

    @dataflow.setter
    def dataflow(self, value: str | None) -> None:
        if value is not None and value not in F.DATAFLOWS:
            raise ValueError(f"dataflow must be None or one of {F.DATAFLOWS}, got {value!r}")
        self._dataflow = value

    def reset_parameters(self) -> None:
        # Uniform in +-1/sqrt(fan_in), fan_in = K * C_in: torch.nn.Conv3d's default scale.
        bound = 1.0 / math.sqrt(self.weight.shape[0] * self.in_channels)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def kernel_map(self, input: SparseTensor) -> tuple[KernelMap, tuple[int, int, int]]:
        """(kernel map, output stride) this layer uses on `input`; built once, then cached."""
        return F.conv_kernel_map(
            input, self.kernel_size, self.stride, self.dilation, self.transposed, self.generative, self.sites
        )

    def forward(self, input: SparseTensor) -> SparseTensor:
        return self.convolve(input, None, False)

    def convolve(self, input: SparseTensor, residual: SparseTensor | None, relu: bool) -> SparseTensor:
        """This layer on `input`, then its epilogue: + residual's feats (same sites), ReLU."""
        return F.conv3d(
            input,
            self.weight,
            self.bias,
            kernel_size=self.kernel_size,
            stride=self.stride,
            dilation=self.dilation,
            transposed=self.transposed,
            generative=self.generative,
            sites=self.sites,
            dataflow=self.dataflow,
            residual=None if residual is None else residual.feats,
            relu=relu,
        )

    def get_extra_state(self) -> dict:
        return {"dataflow": self.dataflow}

    def set_extra_state(self, state: dict) -> None:
        self.dataflow = state["dataflow"]

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}", f"kernel_size={self.kernel_size}"]
        if self.stride != (1, 1, 1):
            parts.append(f"stride={self.stride}")
        if self.dilation != (1, 1, 1):
            parts.append(f"dilation={self.dilation}")
        parts += [name for name in ("transposed", "generative") if getattr(self, name)]
        if self.bias is None:
            parts.append("bias=False")
        if self.dataflow is not None:
            parts.append(f"dataflow={self.dataflow!r}")
        return ", ".join(parts)


class FusedConv3d(Conv3d):
    """A Conv3d with a bias and a fused epilogue, relu?(conv(x) + bias + residual): what
    `pointengine.optimize` makes of Conv3d -> BatchNorm (-> ReLU), the BatchNorm folded into the weight
    and bias. The fused dataflow applies the epilogue in its pass over the output tiles."""

    def __init__(self, *args, relu: bool = False, **kwargs):
        super().__init__(*args, bias=True, **kwargs)
        self.relu = relu

    @classmethod
    def from_conv_norm(cls, conv: Conv3d, norm: torch.nn.BatchNorm1d, relu: bool) -> "FusedConv3d":
        """conv then norm (eval mode: its running statistics), then a ReLU if `relu`, as one layer. The
        folded parameters are computed in float64 and rounded once to the conv's dtype."""
        if norm.running_mean is None:
            raise ValueError("BatchNorm folding needs running statistics (track_running_stats=True)")
        fused = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.dilation,
                    transposed=conv.transposed, generative=conv.generative, sites=conv.sites,
                    dataflow=conv.dataflow, relu=relu)
        scale = torch.rsqrt(norm.running_var.double() + norm.eps)
        shift = -norm.running_mean.double() * scale
        if norm.affine:
            scale, shift = scale * norm.weight.double(), shift * norm.weight.double() + norm.bias.double()
        bias = shift if conv.bias is None else shift + conv.bias.double() * scale
        fused.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            fused.weight.copy_(conv.weight.double() * scale)
            fused.bias.copy_(bias)
        return fused

    def forward(self, input: SparseTensor, residual: SparseTensor | None = None) -> SparseTensor:
        return self.convolve(input, residual, self.relu)

    def extra_repr(self) -> str:
        return super().extra_repr() + (", relu=True" if self.relu else "")
