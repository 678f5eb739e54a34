"""pointengine.optimize: a model for inference, with every BatchNorm that follows a sparse conv folded
into the conv's weight and bias, and the ReLU and the residual add done in the conv's epilogue
(one pass over the output instead of three or four)."""

import copy

import torch

from .. import nn
from ..models.blocks import ConvBlock, FusedResidualBlock, ResidualBlock


def optimize(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` in eval mode, computing what the eval-mode model computes, with
    Conv3d -> BatchNorm (-> ReLU) as one FusedConv3d and each ResidualBlock as a FusedResidualBlock.
    Other modules are kept as they are; `model` itself is not changed. The result is for inference:
    it has no BatchNorm statistics to train."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    optimized = copy.deepcopy(model).eval()
    return fuse(optimized)


def fuse(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with its fusable parts replaced (children are replaced in place; a model whose top
    level is neither a ResidualBlock nor a Sequential is itself returned)."""
    if isinstance(module, ResidualBlock):
        return FusedResidualBlock(module)
    if isinstance(module, ConvBlock) or type(module).forward is torch.nn.Sequential.forward:
        return torch.nn.Sequential(*_fuse_chain(list(module)))  # (a ConvBlock's forward runs its chain)
    for name, child in module.named_children():
        setattr(module, name, fuse(child))
    return module


def _fuse_chain(layers: list[torch.nn.Module]) -> list[torch.nn.Module]:
    """The layers of a Sequential, each Conv3d -> BatchNorm (-> ReLU) run as one FusedConv3d."""
    fused, i = [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, nn.Conv3d) and i + 1 < len(layers) and type(layers[i + 1]) is nn.BatchNorm:
            relu = i + 2 < len(layers) and type(layers[i + 2]) is nn.ReLU
            fused.append(nn.FusedConv3d.from_conv_norm(layer, layers[i + 1], relu))
            i += 3 if relu else 2
        else:
            fused.append(fuse(layer))
            i += 1
    return fused
