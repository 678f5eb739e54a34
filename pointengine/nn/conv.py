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
