"""Our MinkUNet rebuilt from spconv 2.x's layers with the same weights: the baseline of
bench_minkunet.py (CPU) and bench_models.py (GPU). spconv is imported only when a twin is built."""

import torch

import pointengine as pe
from pointengine.models import MinkUNet
from pointengine.models.blocks import ResidualBlock


class _OnFeatures(torch.nn.Module):
    """A dense module (BatchNorm1d, ReLU) applied to the features of a spconv tensor."""

    def __init__(self, module: torch.nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x):
        return x.replace_feature(self.module(x.features))


def _spconv_conv(conv: pe.nn.Conv3d, level: int) -> torch.nn.Module:
    """spconv twin of a Conv3d at `level` (0 = input resolution). Indice keys make the transposed
    convs reuse the maps of the strided convs they invert, and submanifold convs share one map per
    level, as ours do."""
    import spconv.pytorch as sp

    k = conv.kernel_size[0]
    if conv.transposed:
        layer = sp.SparseInverseConv3d(conv.in_channels, conv.out_channels, k, indice_key=f"down{level}", bias=False)
    elif conv.stride != (1, 1, 1):
        layer = sp.SparseConv3d(
            conv.in_channels, conv.out_channels, k, conv.stride[0], bias=False, indice_key=f"down{level}"
        )
    else:
        layer = sp.SubMConv3d(conv.in_channels, conv.out_channels, k, bias=False, indice_key=f"subm{k}_{level}")
    # ours: [K, C_in, C_out] with K = (kx, ky, kz), x slowest; spconv 2.x: [C_out, kx, ky, kz, C_in].
    weight = conv.weight.detach().reshape(*conv.kernel_size, conv.in_channels, conv.out_channels).permute(4, 0, 1, 2, 3)
    if layer.conv1x1:
        # spconv 2.3's 1x1 fast path multiplies by weight.view(C_in, C_out): the same memory read as
        # [C_in, C_out], whatever the declared shape.
        weight = conv.weight.detach()[0].reshape(layer.weight.shape)
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


def _spconv_module(module: torch.nn.Module, level: int) -> torch.nn.Module:
    if isinstance(module, pe.nn.Conv3d):
        return _spconv_conv(module, level)
    if isinstance(module, pe.nn.BatchNorm):
        bn = torch.nn.BatchNorm1d(module.num_features, eps=module.eps, momentum=module.momentum)
        bn.load_state_dict(module.state_dict())
        return _OnFeatures(bn)
    if isinstance(module, pe.nn.ReLU):
        return _OnFeatures(torch.nn.ReLU())
    if isinstance(module, ResidualBlock):
        return _SpconvResidual(module, level)
    if isinstance(module, torch.nn.Identity):
        return torch.nn.Identity()
    if isinstance(module, torch.nn.Sequential):
        return torch.nn.Sequential(*(_spconv_module(m, level) for m in module))
    raise TypeError(f"no spconv twin for {type(module).__name__}")


class _SpconvResidual(torch.nn.Module):
    def __init__(self, block: ResidualBlock, level: int):
        super().__init__()
        self.main, self.shortcut = _spconv_module(block.main, level), _spconv_module(block.shortcut, level)

    def forward(self, x):
        main = self.main(x)
        return main.replace_feature(torch.relu(main.features + self.shortcut(x).features))


class SpconvMinkUNet(torch.nn.Module):
    """Our MinkUNet's layers rebuilt from spconv's, with a copy of its weights and statistics."""

    def __init__(self, model: MinkUNet):
        super().__init__()
        self.stem = _spconv_module(model.stem, 0)
        # Down stage i: its strided conv leaves level i, its blocks run on level i + 1.
        self.down = torch.nn.ModuleList(
            torch.nn.Sequential(_spconv_module(stage[0], i), *(_spconv_module(m, i + 1) for m in stage[1:]))
            for i, stage in enumerate(model.down)
        )
        self.up = torch.nn.ModuleList(_spconv_module(up, 3 - i) for i, up in enumerate(model.up))
        self.up_blocks = torch.nn.ModuleList(_spconv_module(blocks, 3 - i) for i, blocks in enumerate(model.up_blocks))
        self.classifier = torch.nn.Linear(model.classifier.in_features, model.classifier.out_features)
        self.classifier.load_state_dict(model.classifier.state_dict())

    def forward(self, x):
        x = self.stem(x)
        skips = [x]
        for stage in self.down:
            x = stage(x)
            skips.append(x)
        skips.pop()
        for up, blocks in zip(self.up, self.up_blocks):
            y, skip = up(x), skips.pop()
            x = blocks(y.replace_feature(torch.cat([y.features, skip.features], 1)))
        return self.classifier(x.features)


def spconv_input(feats: torch.Tensor, coords: torch.Tensor):
    """(indices, spatial shape) for spconv: non-negative, shifted by a multiple of 16 so the four
    stride-2 levels pair the same voxels as in our grid."""
    lo = torch.div(coords[:, 1:].amin(0), 16, rounding_mode="floor") * 16
    indices = torch.cat([coords[:, :1], coords[:, 1:] - lo], 1).contiguous()
    shape = ((indices[:, 1:].amax(0) // 16 + 1) * 16).tolist()
    return indices, shape


def randomize_statistics(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics, so that a wrong weight layout cannot hide behind BN."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, pe.nn.BatchNorm):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
                module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                module.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                module.bias.copy_(torch.rand(n, generator=gen) * 0.2 - 0.1)
