"""torch.export of a segmentation model as a program on plain tensors: (feats [N, C], coords int32
[N, 4]) in, voxel logits [N, classes] out, the number of sites N dynamic. The program calls
pointengine's registered ops, so loading it (`torch.export.load`) needs `import pointengine` first.
In the program the Python checks that read values are left out (see `_checks.tracing`): the kernels'
own checks stop bad coordinates, with a RuntimeError instead of the eager model's ValueError."""

from pathlib import Path

import torch
from torch import Tensor

from ..tensor import SparseTensor


class PlainTensorModel(torch.nn.Module):
    """`model` (SparseTensor in, SparseTensor out) called on plain tensors."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feats: Tensor, coords: Tensor) -> Tensor:
        return self.model(SparseTensor(feats, coords)).feats


def export_model(model: torch.nn.Module, example: SparseTensor, path: str | Path | None = None) -> torch.export.ExportedProgram:
    """The exported program of `model` in eval mode, traced on `example` (at least 2 sites), saved to
    `path` (a .pt2 file) when given."""
    if not isinstance(example, SparseTensor):
        raise TypeError(f"example must be a SparseTensor, got {type(example).__name__}")
    if example.num_sites < 2:
        raise ValueError(f"example must have at least 2 sites (a size of 0 or 1 is not traced as dynamic), got {example.num_sites}")
    sites = torch.export.Dim("sites")
    with torch.no_grad():
        program = torch.export.export(
            PlainTensorModel(model).eval(), (example.feats, example.coords), dynamic_shapes=({0: sites}, {0: sites})
        )
    if path is not None:
        torch.export.save(program, path)
    return program
