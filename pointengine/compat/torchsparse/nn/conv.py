"""torchsparse.nn.Conv3d: its arguments, and its parameter `kernel` in TorchSparse's shape and
kernel-offset order, so a TorchSparse state dict loads with a plain load_state_dict. The forward
is pointengine's convolution with the kernel reordered into ours (pointengine.models.peer_layouts).
"""

import math

import torch
from torch import Tensor

from .._unsupported import GUIDE
from ....functional import conv as pe_conv
from ....models.peer_layouts import peer_kernel_order
from ....nn.conv import _check_channels
from ..tensor import as_compat

DOWNSAMPLE_MODES = ("spconv", "minkowski")


def output_sites(kernel_size, stride, padding, dilation, transposed: bool, config) -> str:
    """pointengine's `sites` for TorchSparse's downsampling. 2.1's "spconv" mode takes the floor of
    the coordinates when every stride is 1 or its kernel size, else the sites a dense conv with
    `padding` reaches (ours "dense", for the padding that centres the kernel); "minkowski" (2.0's only
    mode) always the floor. At stride 1, padding is ignored for odd kernels, as 2.1 ignores it."""
    mode = (config or {}).get("downsample_mode", "spconv")
    if mode not in DOWNSAMPLE_MODES:
        raise ValueError(f"config['downsample_mode'] must be one of {DOWNSAMPLE_MODES}, got {mode!r}")
    if stride == (1, 1, 1) and any(p and k % 2 == 0 for p, k in zip(padding, kernel_size)):
        raise NotImplementedError(
            f"Conv3d(kernel_size={kernel_size}, padding={padding}): padding on an even kernel at stride 1 shifts "
            f"TorchSparse's sites; pointengine supports padding 0 there (see {GUIDE})"
        )
    if transposed or stride == (1, 1, 1) or mode == "minkowski":
        return "floor"
    if all(s in (1, k) for s, k in zip(stride, kernel_size)):
        return "floor"
    centred = tuple(d * (k // 2) if k % 2 else None for k, d in zip(kernel_size, dilation))
    if tuple(padding) != centred:
        raise NotImplementedError(
            f"Conv3d(kernel_size={kernel_size}, stride={stride}, padding={padding}): a strided conv whose kernel "
            f"differs from its stride is supported with padding = dilation * (kernel_size // 2) = {centred} (odd "
            f"kernels) or config={{'downsample_mode': 'minkowski'}} (see {GUIDE})"
        )
    return "dense"


def as_padding(padding) -> tuple[int, int, int]:
    triple = (padding,) * 3 if isinstance(padding, int) else tuple(padding) if isinstance(padding, (tuple, list)) else ()
    if len(triple) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in triple):
        raise ValueError(f"padding must be an int >= 0 or three of them, got {padding!r}")
    return triple


def kernel_shape(kernel_size, stride, c_in: int, c_out: int) -> tuple[int, ...]:
    """TorchSparse 2.1's `kernel` shape: [K, C_in, C_out], or [C_in, C_out] for a 1x1x1 at stride 1."""
    volume = math.prod(kernel_size)
    return (c_in, c_out) if volume == 1 and stride == (1, 1, 1) else (volume, c_in, c_out)


def kernel_order(kernel_size) -> list[int] | None:
    """ours[k] = theirs[order[k]]; None when the orders agree."""
    try:
        order = peer_kernel_order("torchsparse", kernel_size)
    except ValueError as err:
        raise NotImplementedError(f"Conv3d(kernel_size={kernel_size}): {err} (see {GUIDE})") from None
    return None if order == list(range(len(order))) else order


def our_weight(kernel: Tensor, order: list[int] | None) -> Tensor:
    """A TorchSparse kernel as pointengine's weight [K, C_in, C_out]."""
    if kernel.dim() == 2:
        return kernel.unsqueeze(0)
    return kernel if order is None else kernel[order]


class Conv3d(torch.nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size=3,
        stride=1,
        padding=0,
        dilation=1,
        bias: bool = False,
        transposed: bool = False,
        generative: bool = False,
        config: dict | None = None,
    ):
        super().__init__()
        self.in_channels = _check_channels(in_channels, "in_channels")
        self.out_channels = _check_channels(out_channels, "out_channels")
        self.transposed, self.generative, self.config = transposed, generative, config
        self.padding = as_padding(padding)
        self.kernel_size, self.stride, self.dilation = pe_conv.conv_geometry(
            kernel_size, stride, dilation, transposed, generative, "floor"
        )
        self.sites = output_sites(self.kernel_size, self.stride, self.padding, self.dilation, transposed, config)
        self._order = kernel_order(self.kernel_size)
        shape = kernel_shape(self.kernel_size, self.stride, in_channels, out_channels)
        self.kernel = torch.nn.Parameter(torch.empty(shape))
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if bias else None
        self._converted: tuple | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # TorchSparse's scale: uniform in +-1/sqrt(K * C), C = C_out for a transposed conv, else C_in.
        fan = (self.out_channels if self.transposed else self.in_channels) * math.prod(self.kernel_size)
        bound = 1.0 / math.sqrt(fan)
        torch.nn.init.uniform_(self.kernel, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    @property
    def weight(self) -> Tensor:
        """The kernel as pointengine's weight [K, C_in, C_out]. Without autograd the reordered copy
        is kept until the kernel changes (its version, storage or dtype)."""
        kernel = self.kernel
        if self._order is None or (torch.is_grad_enabled() and kernel.requires_grad):
            return our_weight(kernel, self._order)
        key = (kernel._version, kernel.data_ptr(), kernel.dtype, torch.is_inference_mode_enabled())
        if self._converted is None or self._converted[0] != key:
            with torch.no_grad():
                self._converted = (key, our_weight(kernel, self._order))
        return self._converted[1]

    def forward(self, input):
        return as_compat(
            pe_conv.conv3d(
                input,
                self.weight,
                self.bias,
                kernel_size=self.kernel_size,
                stride=self.stride,
                dilation=self.dilation,
                transposed=self.transposed,
                generative=self.generative,
                sites=self.sites,
            )
        )

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # TorchSparse 2.0 stores every 1x1x1 kernel as [C_in, C_out]; 2.1 keeps [1, C_in, C_out] when strided.
        stored = state_dict.get(prefix + "kernel")
        if stored is not None and stored.shape != self.kernel.shape and stored.numel() == self.kernel.numel() == self.in_channels * self.out_channels:
            state_dict[prefix + "kernel"] = stored.reshape(self.kernel.shape)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        parts = [f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"]
        parts += [f"{name}={getattr(self, name)}" for name in ("stride", "dilation") if getattr(self, name) != (1, 1, 1)]
        parts += [f"{name}=True" for name in ("transposed", "generative") if getattr(self, name)]
        return ", ".join(parts + (["bias=False"] if self.bias is None else []))
