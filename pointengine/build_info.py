"""What this installation was built with: the answers of `pointengine info`."""

import os
from dataclasses import dataclass

import torch

from . import _C, __version__


@dataclass(frozen=True)
class BuildInfo:
    version: str
    torch: str
    cuda_kernels: bool
    openmp: bool
    threads: int
    conv_isa: str
    cpu_paths: tuple[str, ...]
    int8_paths: tuple[str, ...]  # conv_int8's paths on this CPU, the one it takes last
    bf16_paths: tuple[str, ...]

    def lines(self) -> list[str]:
        return [
            f"pointengine {self.version}",
            f"torch {self.torch}",
            f"kernels: CPU{' + CUDA' if self.cuda_kernels else ''}",
            f"OpenMP: {'yes' if self.openmp else 'no'}, threads: {self.threads}",
            f"CPU kernel paths: {', '.join(self.cpu_paths)} (chosen at run time"
            f"{', capped by POINTENGINE_CPU_PATH_MAX' if os.environ.get('POINTENGINE_CPU_PATH_MAX') else ''})",
            f"conv float32: {self.conv_isa}{' (avx2 at <= 8 output channels)' if self.conv_isa == 'avx512' else ''}, "
            "float64: portable",
            f"conv int8: {self.int8_paths[-1]} (of {', '.join(self.int8_paths)}); "
            f"conv bfloat16: {self.bf16_paths[-1]} (of {', '.join(self.bf16_paths)})",
        ]


def build_info() -> BuildInfo:
    """Never touches a CUDA device: it only reports how the extension was compiled."""
    return BuildInfo(
        __version__, torch.__version__, _C.built_with_cuda(), _C.built_with_openmp(), torch.get_num_threads(),
        _C.conv_fused_isa(), tuple(_C.cpu_paths()), tuple(_C.int8_paths()), tuple(_C.bf16_paths()),
    )
